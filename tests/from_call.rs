//! `Scoped::from_call`: the per-request middleware of a server that is not tower, served the
//! way actix-web serves (a current-thread runtime, each connection a plain `spawn_local` task
//! of a `LocalSet` carrying several requests one after the other). No actix-web here: the
//! "inner service" is a closure that sets before it returns its future, as an actix `call` may.
#![cfg(feature = "tokio")]

use std::future::Future;

mod common;

use common::multi_thread;
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

/// `connections` plain `tokio::spawn` tasks, as a server's connection tasks (no context of
/// their own), each serving the requests `r{conn}-{n}` for `n < requests` one after the other
/// through `serve`, which checks what each request saw.
fn serve_keep_alive<F, Fut>(
    rt: &tokio::runtime::Runtime,
    connections: usize,
    requests: usize,
    serve: F,
) where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|conn| {
                let serve = serve.clone();
                tokio::spawn(async move {
                    for n in 0..requests {
                        serve(format!("r{conn}-{n}")).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// The S21 panic message of `fut` run in a plain task on `rt`; panics if it was not refused.
fn refused_in_plain_task<Fut>(rt: &tokio::runtime::Runtime, fut: Fut) -> String
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let err = rt
        .block_on(async { tokio::spawn(fut).await })
        .err()
        .expect("refused (S21)");
    let message = err.into_panic().downcast_ref::<String>().cloned();
    message.unwrap_or_default()
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
    let rt = multi_thread(2);
    let app = std::sync::Arc::new(WithContext(Handler));
    // (Not under Miri: CI skips `multi_thread` tests there.)
    serve_keep_alive(&rt, 40, 6, move |id| {
        let app = app.clone();
        async move {
            assert_eq!(app.call(id.clone()).await, format!("{id}/u-{id}"));
            assert!(REQUEST_ID.get().is_none() && USER.get().is_none());
        }
    });
    // Without the middleware, the handler's `set` in the connection's task is refused.
    let message = refused_in_plain_task(&rt, async { Handler.call("x".into()).await });
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

/// A server shaped as salvo's: a hoop does not return the inner call's future but awaits
/// `ctrl.call_next(req, depot, res)` with `&mut` borrows; the chain (hoops, then the handler)
/// runs in one future in the connection's plain `tokio::spawn` task; the catcher runs after
/// every hoop has returned.
mod salvo_shaped {
    use std::pin::Pin;
    use std::sync::Arc;

    use super::*;
    use contextvars::FutureExt;

    pub type BoxFut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    pub struct Request {
        pub id: String,
        pub log: Vec<String>,
    }

    /// salvo's `Depot`: per-request storage shared by the hoops and the catcher.
    #[derive(Default)]
    pub struct Depot(pub Option<Context>);

    pub trait Handler: Send + Sync {
        fn handle<'a>(
            &'a self,
            req: &'a mut Request,
            depot: &'a mut Depot,
            ctrl: &'a mut FlowCtrl,
        ) -> BoxFut<'a>;
    }

    pub struct FlowCtrl {
        handlers: Vec<Arc<dyn Handler>>,
        cursor: usize,
    }

    impl FlowCtrl {
        pub fn new(handlers: Vec<Arc<dyn Handler>>) -> Self {
            FlowCtrl {
                handlers,
                cursor: 0,
            }
        }

        /// As salvo's: runs every handler not yet run, in this future.
        pub async fn call_next(&mut self, req: &mut Request, depot: &mut Depot) {
            while self.cursor < self.handlers.len() {
                let handler = self.handlers[self.cursor].clone();
                self.cursor += 1;
                handler.handle(req, depot, self).await;
            }
        }
    }

    /// The context hoop of the guide: `Scoped::from_call` around `call_next`, keeping the
    /// request's context in the depot for the catcher.
    pub struct ContextHoop;
    impl Handler for ContextHoop {
        fn handle<'a>(
            &'a self,
            req: &'a mut Request,
            depot: &'a mut Depot,
            ctrl: &'a mut FlowCtrl,
        ) -> BoxFut<'a> {
            Box::pin(async move {
                let id = req.id.clone();
                Scoped::from_call(Context::new(), || {
                    assert!(REQUEST_ID.get().is_none(), "a request starts empty");
                    REQUEST_ID.set(id);
                    async {
                        ctrl.call_next(req, depot).await;
                        depot.0 = Some(Context::current());
                    }
                })
                .await
            })
        }
    }

    /// A hoop after it, Django-style: sets and logs around the rest.
    pub struct Auth;
    impl Handler for Auth {
        fn handle<'a>(
            &'a self,
            req: &'a mut Request,
            depot: &'a mut Depot,
            ctrl: &'a mut FlowCtrl,
        ) -> BoxFut<'a> {
            Box::pin(async move {
                USER.set(format!("u-{}", req.id));
                ctrl.call_next(req, depot).await;
                let line = format!("auth {}", REQUEST_ID.get_cloned().unwrap_or_default());
                req.log.push(line);
            })
        }
    }

    /// The handler: yields (other connections' requests run), spawns a child, logs.
    pub struct Goal;
    impl Handler for Goal {
        fn handle<'a>(
            &'a self,
            req: &'a mut Request,
            _depot: &'a mut Depot,
            _ctrl: &'a mut FlowCtrl,
        ) -> BoxFut<'a> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                let child = task::spawn(async { USER.get_cloned().unwrap_or_default() });
                let child = child.await.unwrap();
                let id = REQUEST_ID.get_cloned().unwrap_or_default();
                req.log.push(format!("goal {id} {child}"));
            })
        }
    }

    /// A catcher hoop: re-enters the request's context kept in the depot.
    pub async fn catcher(req: &mut Request, depot: &mut Depot) {
        let log = async { format!("catch {}", REQUEST_ID.get_cloned().unwrap_or_default()) };
        let line = match depot.0.clone() {
            Some(ctx) => log.with_context(ctx).await,
            None => log.await,
        };
        req.log.push(line);
    }

    /// salvo's `HyperHandler::handle`: the chain, then the catcher, in one future.
    pub async fn serve(hoops: &[Arc<dyn Handler>], id: String) -> Vec<String> {
        let mut req = Request { id, log: vec![] };
        let mut depot = Depot::default();
        let mut handlers = hoops.to_vec();
        handlers.push(Arc::new(Goal));
        FlowCtrl::new(handlers)
            .call_next(&mut req, &mut depot)
            .await;
        catcher(&mut req, &mut depot).await;
        let outside = REQUEST_ID.get_cloned().unwrap_or_default();
        req.log.push(format!("after [{outside}]"));
        req.log
    }
}

#[test]
fn a_salvo_shaped_hoop_on_a_multi_thread_runtime() {
    use salvo_shaped::{Auth, ContextHoop, Handler, serve};
    use std::sync::Arc;

    let rt = multi_thread(2);
    let hoops: Arc<[Arc<dyn Handler>]> = Arc::new([Arc::new(ContextHoop), Arc::new(Auth)]);
    serve_keep_alive(&rt, 40, 6, move |id| {
        let hoops = hoops.clone();
        async move {
            let log = serve(&hoops, id.clone()).await;
            let want = [
                format!("goal {id} u-{id}"),
                format!("auth {id}"),
                format!("catch {id}"),
                "after []".to_owned(),
            ];
            assert_eq!(log, want);
        }
    });
    // Without the context hoop, the first `set` in the connection's task is refused, and the
    // message names salvo's fix.
    let no_context: Arc<[Arc<dyn Handler>]> = Arc::new([Arc::new(Auth)]);
    let message = refused_in_plain_task(&rt, async move { serve(&no_context, "x".into()).await });
    for fix in [
        "salvo",
        "`Service::hoop`",
        "ctrl.call_next(req, depot, res)",
        "`TowerLayerCompat`",
    ] {
        assert!(message.contains(fix), "does not name {fix}: {message}");
    }
}

/// A server shaped as Rocket 0.5's: each request served in a plain `tokio::spawn` task of its
/// own; fairings run before routing (`on_request`, with `&mut Request`) and after the handler
/// (`on_response`), not around it; a route's `Handler` returns a boxed future that borrows the
/// request; `Request::local_cache` is a value set once per request.
mod rocket_shaped {
    use std::pin::Pin;
    use std::sync::{Mutex, OnceLock};

    use contextvars::{Context, Scoped, task};

    use super::{REQUEST_ID, USER};

    pub type BoxFuture<'r> = Pin<Box<dyn Future<Output = String> + Send + 'r>>;

    pub struct Request {
        pub id: String,
        /// `local_cache`: the request's context, carried from fairing to handler to fairing.
        pub cache: OnceLock<Mutex<Context>>,
    }

    pub trait Handler: Send + Sync {
        fn handle<'r>(&'r self, req: &'r Request) -> BoxFuture<'r>;
    }

    /// A route whose request guard sets the user, Django-style, and spawns a child.
    pub struct Route;
    impl Handler for Route {
        fn handle<'r>(&'r self, req: &'r Request) -> BoxFuture<'r> {
            Box::pin(async move {
                USER.set(format!("u-{}", req.id));
                tokio::task::yield_now().await;
                let child = task::spawn(async { USER.get_cloned().unwrap_or_default() });
                let child = child.await.unwrap();
                format!("{}/{child}", REQUEST_ID.get_cloned().unwrap_or_default())
            })
        }
    }

    /// The wrapper put around each route's handler: runs it in the carried context and stores
    /// that context back, with what the guard and the handler set.
    pub struct WithContext(pub Box<dyn Handler>);
    impl Handler for WithContext {
        fn handle<'r>(&'r self, req: &'r Request) -> BoxFuture<'r> {
            let cache = req.cache.get_or_init(|| Mutex::new(Context::new()));
            let ctx = cache.lock().unwrap().clone();
            Box::pin(Scoped::from_call(ctx, || async move {
                let out = self.0.handle(req).await;
                *cache.lock().unwrap() = Context::current();
                out
            }))
        }
    }

    /// One request's task: `on_request`, routing, `on_response`; what each of them saw.
    pub async fn serve(route: &dyn Handler, id: String) -> [String; 3] {
        let req = Request {
            id: id.clone(),
            cache: OnceLock::new(),
        };
        // on_request: the request's context, filled with `Context::run` (no `set` in the task)
        let mut ctx = Context::new();
        ctx.run(|| REQUEST_ID.set(id));
        let _ = req.cache.set(Mutex::new(ctx));
        let body = route.handle(&req).await;
        // on_response: after the handler's future, outside it; logs in the carried context
        let outside = REQUEST_ID.get_cloned().unwrap_or_default();
        let mut ctx = req.cache.get().unwrap().lock().unwrap().clone();
        let on_response = ctx.run(|| {
            let id = REQUEST_ID.get_cloned().unwrap_or_default();
            format!("{id}/{}", USER.get_cloned().unwrap_or_default())
        });
        [body, on_response, format!("outside [{outside}]")]
    }
}

#[test]
fn a_rocket_shaped_route_wrapper_with_the_context_in_local_cache() {
    use rocket_shaped::{Route, WithContext, serve};
    use std::sync::Arc;

    let rt = multi_thread(2);
    let route: Arc<WithContext> = Arc::new(WithContext(Box::new(Route)));
    rt.block_on(async {
        let mut requests = Vec::new();
        for n in 0..if cfg!(miri) { 4 } else { 300 } {
            let route = route.clone();
            // a plain task per request, as Rocket's
            requests.push(tokio::spawn(async move {
                let id = format!("r{n}");
                let seen = serve(&*route, id.clone()).await;
                let want = format!("{id}/u-{id}");
                assert_eq!(seen, [want.clone(), want, "outside []".to_owned()]);
            }));
        }
        for r in requests {
            r.await.unwrap();
        }
    });
    // Without the wrapper, the guard's `set` is refused, and the message names Rocket's fix.
    let message = refused_in_plain_task(&rt, async { serve(&Route, "x".into()).await });
    for fix in ["Rocket", "`Route`'s `handler`", "inner.handle(req, data)"] {
        assert!(message.contains(fix), "does not name {fix}: {message}");
    }
}
