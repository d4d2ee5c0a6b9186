//! Executors that are not Tokio (smol, async-executor, async-std, `futures::executor`): the
//! S21 check sees only Tokio tasks, so a write in an unwrapped task is not refused and lands in
//! the executor thread's context (S13); the guide's recipe ("Other executors") gives every
//! connection, request, child task and blocking job a context of its own. No Tokio here: these
//! run the same with and without the `tokio` feature.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use contextvars::{Context, ContextVar, FutureExt, Scoped};
use futures::executor::LocalPool;
use futures::future::BoxFuture;
use futures::task::{ArcWake, LocalSpawnExt, waker_ref};

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static CONN: ContextVar<u32> = ContextVar::new("conn");
static STEP: ContextVar<String> = ContextVar::new("step");

/// Returns `Pending` once and wakes itself: on a multi-thread executor the task is queued again
/// and may resume on another thread, after other tasks ran on this one.
struct YieldNow(bool);
impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
fn yield_now() -> YieldNow {
    YieldNow(false)
}

#[test]
fn an_unwrapped_task_on_another_executor_writes_into_its_threads_context() {
    std::thread::spawn(|| {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        // Not refused (S21 needs a Tokio task): the value lands in the thread's own context...
        spawner
            .spawn_local(async { drop(REQUEST_ID.set("a".into())) })
            .unwrap();
        pool.run_until_stalled();
        // ...where every later unwrapped task on the thread reads it, and so does the thread.
        let (tx, rx) = channel();
        spawner
            .spawn_local(async move { tx.send(REQUEST_ID.get_cloned()).unwrap() })
            .unwrap();
        pool.run_until_stalled();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("a"));
        assert_eq!(REQUEST_ID.get_cloned().as_deref(), Some("a"));
    })
    .join()
    .unwrap();
}

#[test]
fn an_unwrapped_child_reads_its_thread_not_its_spawner() {
    std::thread::spawn(|| {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let (tx, rx) = channel();
        let s = spawner.clone();
        let request = async move {
            REQUEST_ID.set("req-1".into());
            let plain = async { REQUEST_ID.get_cloned() };
            let tx2 = tx.clone();
            s.spawn_local(async move { tx2.send(("plain", plain.await)).unwrap() })
                .unwrap();
            let wrapped = async { REQUEST_ID.get_cloned() }.with_current_context();
            s.spawn_local(async move { tx.send(("wrapped", wrapped.await)).unwrap() })
                .unwrap();
        };
        spawner
            .spawn_local(request.with_context(Context::new()))
            .unwrap();
        pool.run();
        let mut seen: Vec<_> = rx.try_iter().collect();
        seen.sort();
        assert_eq!(
            seen,
            [("plain", None), ("wrapped", Some("req-1".to_string()))]
        );
        assert!(REQUEST_ID.get().is_none()); // the request wrote into its own context only
    })
    .join()
    .unwrap();
}

/// A minimal work-stealing-ish executor: one queue, `threads` workers, tasks resumed by
/// whichever worker takes them next.
struct Task {
    fut: Mutex<Option<BoxFuture<'static, ()>>>,
    queue: Sender<Arc<Task>>,
}
impl ArcWake for Task {
    fn wake_by_ref(task: &Arc<Self>) {
        let _ = task.queue.send(task.clone());
    }
}
#[derive(Clone)]
struct Executor(Sender<Arc<Task>>);
impl Executor {
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let task = Arc::new(Task {
            fut: Mutex::new(Some(Box::pin(fut))),
            queue: self.0.clone(),
        });
        self.0.send(task).unwrap();
    }
}
fn worker(
    rx: Arc<Mutex<Receiver<Arc<Task>>>>,
    stop: Arc<AtomicBool>,
    refuse: bool,
) -> (bool, bool, bool) {
    if refuse {
        contextvars::thread::refuse_own_context_writes();
    }
    while !stop.load(Ordering::Relaxed) {
        let next = rx.lock().unwrap().recv_timeout(Duration::from_millis(5));
        let Ok(task) = next else { continue };
        let mut slot = task.fut.lock().unwrap();
        if let Some(mut fut) = slot.take() {
            let waker = waker_ref(&task);
            if fut
                .as_mut()
                .poll(&mut TaskContext::from_waker(&waker))
                .is_pending()
            {
                *slot = Some(fut);
            }
        }
    }
    // What the worker thread's own context holds when it stops.
    (
        REQUEST_ID.get().is_none(),
        CONN.get().is_none(),
        STEP.get().is_none(),
    )
}

async fn request(ex: Executor, id: String) -> String {
    yield_now().await;
    // A child task on the same executor: a fork of the request's context.
    let (tx, rx) = futures::channel::oneshot::channel();
    ex.spawn(
        async move {
            STEP.set("child".into());
            yield_now().await;
            let _ = tx.send(format!("{}/{}", REQUEST_ID.value(), STEP.value()));
        }
        .with_current_context(),
    );
    // Blocking work on a thread: the closure bound to a fork (smol's `unblock` takes the same).
    let blocking = std::thread::spawn(Context::current().fork().bind(|| {
        STEP.set("blocking".into());
        format!("{}/{}", REQUEST_ID.value(), STEP.value())
    }));
    let branch = |name: &'static str| {
        async move {
            STEP.set(name.into());
            yield_now().await;
            format!("{}/{}", REQUEST_ID.value(), STEP.value())
        }
        .with_current_context()
    };
    let (a, b) = futures::join!(branch("a"), branch("b"));
    yield_now().await;
    let child = rx.await.unwrap();
    let blocking = blocking.join().unwrap();
    assert!(
        STEP.get().is_none(),
        "{id}: a branch or child wrote into the request"
    );
    format!(
        "{} {} {child} {blocking} {a} {b}",
        REQUEST_ID.value(),
        CONN.value()
    )
}

#[test]
fn the_guides_recipe_isolates_every_request_on_a_multi_thread_executor() {
    run_the_guides_recipe(false);
}

#[test]
fn the_guides_recipe_runs_unchanged_on_multi_thread_executor_threads_that_refuse_writes() {
    // On threads that refuse writes to their own context, the same service runs unchanged.
    run_the_guides_recipe(true);
}

fn run_the_guides_recipe(refuse: bool) {
    let (tx, rx) = channel::<Arc<Task>>();
    let rx = Arc::new(Mutex::new(rx));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (rx, stop) = (rx.clone(), stop.clone());
            std::thread::spawn(move || worker(rx, stop, refuse))
        })
        .collect();
    let ex = Executor(tx);
    let (done_tx, done_rx) = channel::<(String, String)>();
    for conn in 0..100u32 {
        let (ex2, done_tx) = (ex.clone(), done_tx.clone());
        // One context per connection...
        let connection = async move {
            CONN.set(conn);
            for n in 0..5 {
                let id = format!("c{conn}-r{n}");
                yield_now().await;
                // ...and a fork of it per request, the request's own `set` made inside.
                let ex3 = ex2.clone();
                let got = Scoped::from_call(Context::current().fork(), || {
                    REQUEST_ID.set(id.clone());
                    request(ex3, id.clone())
                })
                .await;
                assert!(
                    REQUEST_ID.get().is_none(),
                    "the request leaked into its connection"
                );
                done_tx.send((id, got)).unwrap();
            }
        };
        ex.spawn(connection.with_context(Context::new()));
    }
    drop(done_tx);
    let mut results = Vec::new();
    while let Ok(r) = done_rx.recv_timeout(Duration::from_secs(60)) {
        results.push(r); // ends when every connection is done (or a panic dropped one)
    }
    stop.store(true, Ordering::Relaxed);
    let clean: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(results.len(), 500);
    results.sort();
    for (id, got) in &results {
        let conn = id[1..].split('-').next().unwrap();
        assert_eq!(
            got,
            &format!("{id} {conn} {id}/child {id}/blocking {id}/a {id}/b"),
            "request {id} saw another request's values"
        );
    }
    assert!(
        clean.iter().all(|&c| c == (true, true, true)),
        "a worker kept values: {clean:?}"
    );
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(text) => *text,
        Err(panic) => panic.downcast_ref::<&str>().unwrap_or(&"").to_string(),
    }
}

#[test]
fn a_thread_that_refuses_own_context_writes_refuses_an_unwrapped_task_and_names_the_fix() {
    static CRITICAL: contextvars::Local = contextvars::Local::thread_critical();
    std::thread::spawn(|| {
        contextvars::thread::refuse_own_context_writes();
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        spawner
            .spawn_local(async { drop(REQUEST_ID.set("a".into())) })
            .unwrap();
        let refused =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.run_until_stalled()));
        let message = panic_text(refused.expect_err("an unwrapped task's set is refused"));
        assert!(
            message.starts_with(
                "contextvars: `ContextVar::set` in work that has no context of its own"
            ),
            "{message}"
        );
        for fix in [
            "contextvars::thread::refuse_own_context_writes",
            "`.with_context(contextvars::Context::new())`",
            "`.with_current_context()`",
            "`contextvars::Context::current().fork().bind(job)`",
            "smol, async-executor and other executors",
        ] {
            assert!(
                message.contains(fix),
                "the message lacks {fix:?}: {message}"
            );
        }
        assert!(!message.contains("Tokio task"), "{message}");
        // Refused before anything changed; reads are never refused.
        assert!(REQUEST_ID.get().is_none());
        // Every other write on the thread, thread-critical ones included, is refused too...
        let local = std::panic::catch_unwind(|| CRITICAL.set("user", 1u32));
        assert!(
            panic_text(local.unwrap_err())
                .contains("`Local::set` in work that has no context of its own")
        );
        // ...but not in a context of the work's own: a wrapped task, `run`, a bound closure.
        let mut pool = LocalPool::new();
        let (tx, rx) = channel();
        pool.spawner()
            .spawn_local(
                async move {
                    REQUEST_ID.set("wrapped".into());
                    CRITICAL.set("user", 2u32);
                    yield_now().await;
                    tx.send(REQUEST_ID.get_cloned()).unwrap();
                }
                .with_context(Context::new()),
            )
            .unwrap();
        pool.run();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("wrapped"));
        Context::new().run(|| REQUEST_ID.set("run".into()));
        // A `run` keeps the thread's thread-critical storage: refused there, as in a Tokio task.
        let in_run = std::panic::catch_unwind(|| Context::new().run(|| CRITICAL.set("user", 3u32)));
        assert!(
            panic_text(in_run.unwrap_err())
                .contains("`Local::set` in work that has no context of its own")
        );
        Context::new().bind(|| REQUEST_ID.set("bound".into()))();
        Context::new().bind(|| CRITICAL.set("user", 3u32))();
        // A `run` keeps the thread's thread-critical storage (S19): refused, and the message
        // says so, although a context is entered.
        let in_run = std::panic::catch_unwind(|| Context::new().run(|| CRITICAL.set("user", 4u32)));
        let message = panic_text(in_run.unwrap_err());
        assert!(
            message.contains("a `Context::run` keeps the thread's storage"),
            "{message}"
        );
        assert!(REQUEST_ID.get().is_none(), "nothing reached the thread");
        // Threads it spawns do not inherit it.
        std::thread::spawn(|| drop(REQUEST_ID.set("other thread".into())))
            .join()
            .expect("a new thread writes to its own context");
    })
    .join()
    .unwrap();
}

/// A Tokio task on such a thread still gets the Tokio message, whose fixes are Tokio's.
#[cfg(feature = "tokio")]
#[test]
fn in_a_tokio_task_the_refusal_stays_tokios() {
    std::thread::spawn(|| {
        contextvars::thread::refuse_own_context_writes();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let refused = runtime
            .block_on(async { tokio::spawn(async { drop(REQUEST_ID.set("a".into())) }).await })
            .unwrap_err();
        let message = panic_text(refused.into_panic());
        assert!(
            message.starts_with(
                "contextvars: `ContextVar::set` inside a Tokio task that has no context of its own"
            ),
            "{message}"
        );
    })
    .join()
    .unwrap();
}
