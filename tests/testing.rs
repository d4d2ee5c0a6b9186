//! What the guide's "Testing" section relies on: a service called in a `#[tokio::test]` body
//! runs in the root future (writes allowed, so a missing `ContextLayer` goes unnoticed there),
//! the same call from a task is refused (S21), and cases run one after another on one thread
//! share a bare `set` unless each runs in a fresh context.
#![cfg(feature = "tower")]

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use contextvars::tower::ContextLayer;
use contextvars::{Context, ContextVar, FutureExt, task};
use tower::ServiceExt;

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static TENANT: ContextVar<String> = ContextVar::new("tenant");

async fn set_from_headers(request: Request, next: Next) -> Response {
    set_vars(&request);
    next.run(request).await
}

fn set_vars(request: &Request) {
    let header = |name: &str| {
        let value = request.headers().get(name)?;
        value.to_str().ok().map(str::to_owned)
    };
    let (id, tenant) = (header("x-request-id"), header("x-tenant"));
    if let Some(id) = id {
        REQUEST_ID.set(id);
    }
    if let Some(tenant) = tenant {
        TENANT.set(tenant);
    }
}

fn tag() -> String {
    let get = |var: &ContextVar<String>| var.get_cloned().unwrap_or_else(|| "-".into());
    format!("{}@{}", get(&REQUEST_ID), get(&TENANT))
}

/// The routes and the middleware, without `ContextLayer`: the test author's mistake.
fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { tag() }))
        .layer(middleware::from_fn(set_from_headers))
}

fn request(id: &str, tenant: Option<&str>) -> Request {
    let mut builder = Request::builder().header("x-request-id", id);
    if let Some(tenant) = tenant {
        builder = builder.header("x-tenant", tenant);
    }
    builder.body(Body::empty()).unwrap()
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn panic_message(err: tokio::task::JoinError) -> String {
    let payload = err.into_panic();
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast_ref::<&str>().unwrap_or(&"").to_string(),
    }
}

#[tokio::test]
async fn without_the_layer_a_call_in_the_test_body_writes_into_the_tests_context() {
    let app = routes();
    let first = app
        .clone()
        .oneshot(request("r1", Some("acme")))
        .await
        .unwrap();
    assert_eq!(text(first).await, "r1@acme");
    // No panic, and the second request reads the first one's tenant.
    let second = app.oneshot(request("r2", None)).await.unwrap();
    assert_eq!(text(second).await, "r2@acme");
    assert_eq!(tag(), "r2@acme"); // the test's own context holds the requests' values
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_layer_a_call_in_the_multi_thread_test_body_is_not_refused_either() {
    let response = routes().oneshot(request("r1", None)).await.unwrap();
    assert_eq!(text(response).await, "r1@-");
    assert_eq!(tag(), "r1@-");
}

#[test]
fn without_the_layer_a_call_from_a_task_panics_naming_context_layer() {
    for multi_thread in [false, true] {
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread().build()
        } else {
            tokio::runtime::Builder::new_current_thread().build()
        };
        rt.unwrap().block_on(async {
            let err = tokio::spawn(routes().oneshot(request("r1", None)))
                .await
                .unwrap_err();
            let message = panic_message(err);
            assert!(message.contains("(S21)"), "{message}");
            assert!(message.contains("tower::ContextLayer"), "{message}");
        });
    }
}

#[tokio::test]
async fn with_the_layer_a_call_from_a_task_or_the_body_leaves_nothing_behind() {
    let app = routes().layer(ContextLayer::new());
    let first = tokio::spawn(app.clone().oneshot(request("r1", Some("acme"))));
    assert_eq!(text(first.await.unwrap().unwrap()).await, "r1@acme");
    let second = app.oneshot(request("r2", None)).await.unwrap();
    assert_eq!(text(second).await, "r2@-");
    assert_eq!(tag(), "-@-");
}

#[tokio::test]
async fn on_a_current_thread_test_plain_tasks_read_the_tests_values_and_cannot_write() {
    REQUEST_ID.set("test".into());
    let read = tokio::spawn(async { tag() }).await.unwrap();
    assert_eq!(read, "test@-");
    let refused = tokio::spawn(async { TENANT.set("x".into()) }).await;
    assert!(panic_message(refused.unwrap_err()).contains("(S21)"));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let read = tokio::task::spawn_local(async { tag() }).await.unwrap();
            assert_eq!(read, "test@-");
            let refused = tokio::task::spawn_local(async { TENANT.set("x".into()) }).await;
            assert!(panic_message(refused.unwrap_err()).contains("(S21)"));
            let own = task::spawn_local(async {
                TENANT.set("own".into());
                tag()
            });
            assert_eq!(own.await.unwrap(), "test@own");
        })
        .await;
    assert_eq!(tag(), "test@-");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_multi_thread_test_plain_tasks_read_nothing() {
    REQUEST_ID.set("test".into());
    assert_eq!(tokio::spawn(async { tag() }).await.unwrap(), "-@-");
    assert_eq!(task::spawn(async { tag() }).await.unwrap(), "test@-");
}

#[tokio::test(start_paused = true)]
async fn a_paused_clock_changes_nothing_of_this() {
    REQUEST_ID.set("paused".into());
    let child = task::spawn(async {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        tag()
    });
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    assert_eq!(child.await.unwrap(), "paused@-");
    assert_eq!(tokio::spawn(async { tag() }).await.unwrap(), "paused@-");
}

#[test]
fn cases_on_one_thread_share_a_bare_set_and_run_gives_each_a_fresh_context() {
    let cases = [Some("acme"), None];
    let bare: Vec<String> = cases
        .iter()
        .map(|tenant| {
            if let Some(tenant) = tenant {
                TENANT.set(tenant.to_string());
            }
            tag()
        })
        .collect();
    assert_eq!(bare, ["-@acme", "-@acme"]); // the second case reads the first one's tenant
    let fresh: Vec<String> = cases
        .iter()
        .map(|tenant| {
            Context::new().run(|| {
                if let Some(tenant) = tenant {
                    TENANT.set(tenant.to_string());
                }
                tag()
            })
        })
        .collect();
    assert_eq!(fresh, ["-@acme", "-@-"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_case_in_a_fresh_context_leaves_the_test_untouched() {
    TENANT.set("test".into());
    for tenant in ["a", "b"] {
        let seen = async {
            TENANT.set(tenant.into());
            tokio::task::yield_now().await;
            tag()
        }
        .with_context(Context::new())
        .await;
        assert_eq!(seen, format!("-@{tenant}"));
    }
    assert_eq!(tag(), "-@test");
}

#[test]
fn the_tests_values_reach_a_request_from_a_plain_task_only_on_a_current_thread_runtime() {
    // `ContextLayer` forks the context current at `call`: the test's in the body and in a
    // `task::spawn` child; in a plain task, the thread's: the test's on a current-thread
    // runtime, a worker's (empty) on a multi-thread one.
    for (multi_thread, from_plain_task) in [(false, "r3@seeded"), (true, "r3@-")] {
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread().build()
        } else {
            tokio::runtime::Builder::new_current_thread().build()
        };
        rt.unwrap().block_on(async {
            TENANT.set("seeded".into());
            let app = routes().layer(ContextLayer::new());
            let body = app.clone().oneshot(request("r1", None)).await.unwrap();
            assert_eq!(text(body).await, "r1@seeded");
            let child = task::spawn(app.clone().oneshot(request("r2", None)));
            assert_eq!(text(child.await.unwrap().unwrap()).await, "r2@seeded");
            let plain = tokio::spawn(app.oneshot(request("r3", None)));
            assert_eq!(text(plain.await.unwrap().unwrap()).await, from_plain_task);
        });
    }
}

#[tokio::test]
async fn without_the_layer_a_call_from_task_spawn_is_not_refused() {
    // `task::spawn` gives the call a context of its own: the missing layer goes unnoticed there
    // too (the requests share that task's context).
    let app = routes();
    let child = task::spawn(async move {
        let first = app
            .clone()
            .oneshot(request("r1", Some("acme")))
            .await
            .unwrap();
        let second = app.oneshot(request("r2", None)).await.unwrap();
        (text(first).await, text(second).await)
    });
    assert_eq!(child.await.unwrap(), ("r1@acme".into(), "r2@acme".into()));
    assert_eq!(tag(), "-@-");
}
