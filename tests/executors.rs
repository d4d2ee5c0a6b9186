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
fn worker(rx: Arc<Mutex<Receiver<Arc<Task>>>>, stop: Arc<AtomicBool>) -> (bool, bool, bool) {
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
    let (tx, rx) = channel::<Arc<Task>>();
    let rx = Arc::new(Mutex::new(rx));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (rx, stop) = (rx.clone(), stop.clone());
            std::thread::spawn(move || worker(rx, stop))
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
