//! Identities handed out once and never reused (S1): the crate's one hand-written atomic
//! protocol. Generic over [`IdAtomic`] so that `tests/loom_ids.rs` checks this very code with
//! loom's atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// The operations the protocol needs from an atomic `u64`.
pub(crate) trait IdAtomic {
    fn load_relaxed(&self) -> u64;
    fn fetch_add_relaxed(&self, n: u64) -> u64;
    fn compare_exchange_relaxed(&self, current: u64, new: u64) -> Result<u64, u64>;
}

impl IdAtomic for AtomicU64 {
    #[inline]
    fn load_relaxed(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }

    #[inline]
    fn fetch_add_relaxed(&self, n: u64) -> u64 {
        self.fetch_add(n, Ordering::Relaxed)
    }

    #[inline]
    fn compare_exchange_relaxed(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.compare_exchange(current, new, Ordering::Relaxed, Ordering::Relaxed)
    }
}

/// The id stored in `slot`, taking a fresh one from `counter` on first use (0 = unassigned).
///
/// Every caller gets the same id, however many threads race on the first use: the first
/// compare-exchange wins, and a loser's fresh id is simply never used (ids only need to be
/// unique, not dense). Relaxed ordering suffices: the id is a number, it publishes no memory.
#[inline]
pub(crate) fn get_or_assign(slot: &impl IdAtomic, counter: &impl IdAtomic) -> u64 {
    match slot.load_relaxed() {
        0 => assign(slot, counter),
        id => id,
    }
}

#[cold]
fn assign(slot: &impl IdAtomic, counter: &impl IdAtomic) -> u64 {
    let fresh = counter.fetch_add_relaxed(1);
    match slot.compare_exchange_relaxed(0, fresh) {
        Ok(_) => fresh,
        Err(winner) => winner,
    }
}
