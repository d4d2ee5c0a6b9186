//! Loom model of the crate's one hand-written atomic protocol: lazy, never-reused variable ids
//! (`src/id.rs`, included here as-is and run on loom's atomics). Loom explores every
//! interleaving of the threads below.

#[path = "../src/id.rs"]
#[allow(dead_code)]
mod id;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};

impl id::IdAtomic for AtomicU64 {
    fn load_relaxed(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }

    fn fetch_add_relaxed(&self, n: u64) -> u64 {
        self.fetch_add(n, Ordering::Relaxed)
    }

    fn compare_exchange_relaxed(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.compare_exchange(current, new, Ordering::Relaxed, Ordering::Relaxed)
    }
}

#[test]
fn racing_first_uses_of_one_var_agree_on_its_id() {
    loom::model(|| {
        let counter = Arc::new(AtomicU64::new(1));
        let slot = Arc::new(AtomicU64::new(0));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (counter, slot) = (counter.clone(), slot.clone());
                loom::thread::spawn(move || id::get_or_assign(&*slot, &*counter))
            })
            .collect();
        let here = id::get_or_assign(&*slot, &*counter);
        for racer in racers {
            assert_eq!(racer.join().unwrap(), here);
        }
        assert_ne!(here, 0);
    });
}

#[test]
fn two_vars_first_used_concurrently_get_different_ids() {
    loom::model(|| {
        let counter = Arc::new(AtomicU64::new(1));
        let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let other = {
            let (counter, b) = (counter.clone(), b.clone());
            loom::thread::spawn(move || id::get_or_assign(&*b, &*counter))
        };
        let id_a = id::get_or_assign(&*a, &*counter);
        let id_b = other.join().unwrap();
        assert_ne!(id_a, id_b);
        assert_eq!(
            id::get_or_assign(&*a, &*counter),
            id_a,
            "stable once assigned"
        );
    });
}
