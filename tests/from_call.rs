//! `Scoped::from_call`: the per-request middleware of a server that is not tower, served the
//! way actix-web serves (a current-thread runtime, each connection a plain `spawn_local` task
//! of a `LocalSet` carrying several requests one after the other). No actix-web here: the
//! "inner service" is a closure that sets before it returns its future, as an actix `call` may.
#![cfg(feature = "tokio")]

use std::future::Future;

use contextvars::{Context, ContextVar, Local, Scoped, task};

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static USER: ContextVar<String> = ContextVar::new("user");
static CRITICAL: Local = Local::thread_critical();

/// The inner service's `call`: reads what the middleware set, sets more, returns its future.
fn inner_call(user: String) -> impl Future<Output = (String, String, String, String)> {
    let id_in_call = REQUEST_ID.get_cloned().unwrap_or_default();
    USER.set(user.clone());
    CRITICAL.set("conn", user);
    async move {
        tokio::task::yield_now().await; // other connections' requests run here
        let child = task::spawn_local(async { USER.get_cloned().unwrap_or_default() });
        let child = child.await.unwrap();
        let critical = CRITICAL
            .get::<String>("conn")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        (
            id_in_call,
            REQUEST_ID.get_cloned().unwrap_or_default(),
            child,
            critical,
        )
    }
}

/// The middleware: a context of its own per request; its own `set` and the inner `call` in it.
fn middleware(
    id: String,
    user: String,
) -> Scoped<impl Future<Output = (String, String, String, String)>> {
    Scoped::from_call(Context::new(), move || {
        assert!(
            REQUEST_ID.get().is_none() && USER.get().is_none(),
            "a request starts empty"
        );
        REQUEST_ID.set(id);
        inner_call(user)
    })
}

#[test]
fn every_request_of_every_keep_alive_connection_is_its_own() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut connections = Vec::new();
        let (connections_n, requests) = if cfg!(miri) { (4, 3) } else { (50, 8) };
        for conn in 0..connections_n {
            // a plain task, as actix-web's: no context of its own
            connections.push(tokio::task::spawn_local(async move {
                for n in 0..requests {
                    let id = format!("r{conn}-{n}");
                    let user = format!("u{conn}-{n}");
                    let seen = middleware(id.clone(), user.clone()).await;
                    assert_eq!(seen, (id.clone(), id, user.clone(), user));
                    // nothing reached the connection's task
                    assert!(REQUEST_ID.get().is_none() && USER.get().is_none());
                }
            }));
        }
        for c in connections {
            c.await.unwrap();
        }
    });
    assert!(REQUEST_ID.get().is_none() && USER.get().is_none());
    assert!(!CRITICAL.contains("conn"));
}

#[test]
fn from_call_keeps_what_call_set_and_hands_back_the_context() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let scoped = Scoped::from_call(
        Context::new().with_value(&REQUEST_ID, "a".to_owned()),
        || {
            assert_eq!(
                REQUEST_ID.get_cloned().as_deref(),
                Some("a"),
                "call runs in `context`"
            );
            USER.set("alice".to_owned());
            async { USER.get_cloned() }
        },
    );
    assert_eq!(
        scoped.context().get(&USER).as_deref().map(String::as_str),
        Some("alice")
    );
    assert_eq!(rt.block_on(scoped).as_deref(), Some("alice"));
    assert!(USER.get().is_none());
}

#[test]
fn without_the_middleware_a_set_in_a_local_task_is_refused_with_the_actix_fix() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let err = local
        .block_on(&rt, async {
            tokio::task::spawn_local(async {
                REQUEST_ID.set("x".into());
            })
            .await
        })
        .expect_err("refused (S21)");
    let payload = err.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    for fix in [
        "contextvars::Scoped::from_call",
        "actix-web",
        "`.wrap` call",
        "spawn_local",
    ] {
        assert!(message.contains(fix), "does not name {fix}: {message}");
    }
}

/// A server shaped as poem's: an `Endpoint` trait whose `call` borrows `&self` and returns a
/// `Send` future, a middleware that wraps the inner endpoint, connections served in plain
/// `tokio::spawn` tasks of a multi-thread runtime, several requests per connection.
trait Endpoint: Send + Sync {
    fn call(&self, request: String) -> impl Future<Output = String> + Send;
}

/// The handler: sets a value Django-style, spawns a child, reads both after a yield.
struct Handler;
impl Endpoint for Handler {
    async fn call(&self, request: String) -> String {
        USER.set(format!("u-{request}"));
        tokio::task::yield_now().await;
        let child = task::spawn(async { USER.get_cloned().unwrap_or_default() });
        let child = child.await.unwrap();
        format!("{}/{}", REQUEST_ID.get_cloned().unwrap_or_default(), child)
    }
}

/// The middleware's endpoint: `Scoped::from_call` in `call`, borrowing `self.0`.
struct WithContext<E>(E);
impl<E: Endpoint> Endpoint for WithContext<E> {
    fn call(&self, request: String) -> impl Future<Output = String> + Send {
        Scoped::from_call(Context::new(), || {
            assert!(REQUEST_ID.get().is_none(), "a request starts empty");
            REQUEST_ID.set(request.clone());
            self.0.call(request)
        })
    }
}

#[test]
fn a_poem_shaped_middleware_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = std::sync::Arc::new(WithContext(Handler));
    // (Not under Miri: CI skips `multi_thread` tests there.)
    let (connections_n, requests) = (40, 6);
    rt.block_on(async {
        let mut connections = Vec::new();
        for conn in 0..connections_n {
            let app = app.clone();
            // a plain task, as poem's connection tasks: no context of its own
            connections.push(tokio::spawn(async move {
                for n in 0..requests {
                    let id = format!("r{conn}-{n}");
                    assert_eq!(app.call(id.clone()).await, format!("{id}/u-{id}"));
                    assert!(REQUEST_ID.get().is_none() && USER.get().is_none());
                }
            }));
        }
        for c in connections {
            c.await.unwrap();
        }
    });
    // Without the middleware, the handler's `set` in the connection's task is refused.
    let err = rt
        .block_on(async { tokio::spawn(async { Handler.call("x".into()).await }).await })
        .expect_err("refused (S21)");
    let message = err.into_panic().downcast_ref::<String>().cloned();
    let message = message.unwrap_or_default();
    for fix in [
        "poem",
        "`.with` call",
        "`Endpoint::call`",
        "Scoped::from_call",
        "`ContextLayer` or its `from_call` middleware", // under `runtime::propagate` too
    ] {
        assert!(message.contains(fix), "does not name {fix}: {message}");
    }
}
