//! Identities handed out once and never reused (S1).
//!
//! - Variable ids, assigned on a variable's first use: the crate's one hand-written atomic
//!   protocol, generic over [`IdAtomic`] so that `tests/loom_ids.rs` checks this very code
//!   with loom's atomics.
//! - Context ids (what a [`Token`](crate::Token) checks it is reset in): blocks of a shared
//!   counter, handed out per thread ([`fresh_context_id`]).

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

/// How many context ids a thread takes from the shared counter at a time.
const CONTEXT_ID_BLOCK: u64 = 1024;

/// The first id of the next block of context ids; 0 is never handed out (it means "none yet").
static NEXT_CONTEXT_ID_BLOCK: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    /// The calling thread's unused context ids, `next..end` (none at first). Const-initialized
    /// and without a destructor: with native thread-locals it is usable at any time, even
    /// while the thread exits.
    static CONTEXT_IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A context id no other call returns, in this thread or another; never 0.
///
/// Every request's context takes one on its first `set`, so ids come from a per-thread block:
/// one shared `fetch_add` per 1,024 ids keeps threads from contending on one cache line.
#[inline]
pub(crate) fn fresh_context_id() -> u64 {
    CONTEXT_IDS
        .try_with(|ids| {
            let (mut next, mut end) = ids.get();
            if next == end {
                (next, end) = reserve_block();
            }
            ids.set((next + 1, end));
            next
        })
        // Where thread-locals live under OS keys, they can be gone while the thread exits: a
        // block of its own for this one id.
        .unwrap_or_else(|_| reserve_block().0)
}

/// A block of context ids no thread has had, `start..end`.
#[cold]
fn reserve_block() -> (u64, u64) {
    let start = NEXT_CONTEXT_ID_BLOCK.fetch_add(CONTEXT_ID_BLOCK, Ordering::Relaxed);
    (start, start + CONTEXT_ID_BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_ids_are_unique_across_threads_and_blocks() {
        // Every thread crosses into a second block at least; fewer ids under Miri (slow).
        let (threads, per_thread) = match cfg!(miri) {
            true => (2, CONTEXT_ID_BLOCK as usize + 1),
            false => (4, 3 * CONTEXT_ID_BLOCK as usize + 7),
        };
        let threads: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|_| fresh_context_id())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ids: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(ids.iter().all(|&id| id != 0));
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "an id was handed out twice");
    }
}
