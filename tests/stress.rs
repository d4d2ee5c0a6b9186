//! Stress: spawn trees of depth 4 on a 4-worker multi-thread runtime, every edge one of
//! `task::spawn`, `task::spawn_blocking`, `task::sync_to_async`, `task::async_to_sync` and
//! `thread::spawn`. Every node checks, at every step, that it sees exactly its own value and
//! its ancestors' values as of its fork; parents change their own value after forking children,
//! which the children must not see. Checks and mismatches are counted and reported.
//!
//! Ignored by default. `.ci/run` runs it bounded; the full size is 100,000 tasks:
//! `CONTEXTVARS_STRESS_TASKS=100000 cargo test --release --test stress -- --ignored --nocapture`
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use contextvars::{Context, ContextVar, FutureExt, task};

const DEPTH: usize = 4;
const BRANCH: u64 = 2;
/// Nodes in one tree: 1 + 2 + 4 + 8 + 16.
const TREE: u64 = 31;
/// A parent's own value after it has forked its children.
const AFTER_FORK: u64 = 1 << 40;

static LEVELS: [ContextVar<u64>; DEPTH + 1] = [
    ContextVar::new("level0"),
    ContextVar::new("level1"),
    ContextVar::new("level2"),
    ContextVar::new("level3"),
    ContextVar::new("level4"),
];

#[derive(Default)]
struct Stats {
    nodes: AtomicU64,
    checks: AtomicU64,
    mismatches: AtomicU64,
    next_id: AtomicU64,
}

impl Stats {
    fn check(&self, expected: &[u64]) {
        for (level, want) in expected.iter().enumerate() {
            self.checks.fetch_add(1, Relaxed);
            if LEVELS[level].get().as_deref() != Some(want) {
                self.mismatches.fetch_add(1, Relaxed);
            }
        }
    }

    /// Starts a node: binds its own level and returns what it must see from now on.
    fn enter_node(&self, depth: usize, mut expected: Vec<u64>) -> (u64, Vec<u64>) {
        self.nodes.fetch_add(1, Relaxed);
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        self.check(&expected);
        LEVELS[depth].set(id);
        expected.push(id);
        self.check(&expected);
        (id, expected)
    }

    /// After forking its children, a node changes its own value; the children must not see it.
    fn change_own_value(&self, depth: usize, id: u64, expected: &mut [u64]) {
        LEVELS[depth].set(id + AFTER_FORK);
        expected[depth] = id + AFTER_FORK;
        self.check(expected);
    }
}

/// A node running as async code (a task, or a future inside `async_to_sync`).
fn async_node(
    stats: Arc<Stats>,
    depth: usize,
    expected: Vec<u64>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let (id, mut expected) = stats.enter_node(depth, expected);
        tokio::task::yield_now().await;
        stats.check(&expected);
        if depth == DEPTH {
            return;
        }
        let mut forked = Vec::new();
        for child in 0..BRANCH {
            let (s, e) = (stats.clone(), expected.clone());
            match (id + child) % 3 {
                0 => forked.push(task::spawn(async_node(s, depth + 1, e))),
                1 => forked.push(task::spawn_blocking(move || sync_node(s, depth + 1, e))),
                _ => {
                    // Inline bridge: the child's changes at deeper levels come back, which
                    // leaves the levels this node checks untouched.
                    task::sync_to_async(move || sync_node(s, depth + 1, e)).await;
                    stats.check(&expected);
                }
            }
        }
        stats.change_own_value(depth, id, &mut expected);
        for child in forked {
            child.await.expect("child task");
            stats.check(&expected);
        }
    })
}

/// A node running as sync code (a blocking-pool job, a bridge closure, or a thread).
fn sync_node(stats: Arc<Stats>, depth: usize, expected: Vec<u64>) {
    let (id, mut expected) = stats.enter_node(depth, expected);
    if depth == DEPTH {
        return;
    }
    let mut threads = Vec::new();
    for child in 0..BRANCH {
        let (s, e) = (stats.clone(), expected.clone());
        // Plain threads only for leaves: a thread's own `async_to_sync` would build a runtime.
        if depth + 1 == DEPTH && (id + child) % 2 == 0 {
            threads.push(contextvars::thread::spawn(move || {
                sync_node(s, depth + 1, e)
            }));
        } else {
            task::async_to_sync(async_node(s, depth + 1, e));
            stats.check(&expected);
        }
    }
    stats.change_own_value(depth, id, &mut expected);
    for thread in threads {
        thread.join().expect("child thread");
        stats.check(&expected);
    }
}

#[test]
#[ignore = "stress test: run with --ignored; size with CONTEXTVARS_STRESS_TASKS"]
fn spawn_trees_see_only_their_own_and_their_ancestors_values() {
    let tasks: u64 = std::env::var("CONTEXTVARS_STRESS_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let trees = tasks.div_ceil(TREE);
    let stats = Arc::new(Stats::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let s = stats.clone();
    runtime.block_on(
        async move {
            // Bounded concurrency: each `async_to_sync` holds a blocking thread while its
            // subtree runs, so too many trees at once could exhaust the blocking pool.
            let permits = Arc::new(tokio::sync::Semaphore::new(16));
            let mut roots = Vec::with_capacity(trees as usize);
            for _ in 0..trees {
                let permit = permits.clone().acquire_owned().await.expect("semaphore");
                let s = s.clone();
                roots.push(task::spawn(async move {
                    async_node(s, 0, Vec::new()).await;
                    drop(permit);
                }));
            }
            for root in roots {
                root.await.expect("root task");
            }
            assert!(
                LEVELS[0].get().is_none(),
                "the driver never sees a tree's values"
            );
        }
        .with_context(Context::new()),
    );
    let (nodes, checks, mismatches) = (
        stats.nodes.load(Relaxed),
        stats.checks.load(Relaxed),
        stats.mismatches.load(Relaxed),
    );
    println!(
        "stress: {trees} trees, {nodes} tasks, {checks} checks, {mismatches} mismatches in {:.1?}",
        started.elapsed()
    );
    assert_eq!(nodes, trees * TREE);
    assert_eq!(mismatches, 0);
}
