//! `contextvars::tracing`: context variables on every `tracing` event.
#![cfg(feature = "tracing")]

use std::io;
use std::sync::{Arc, Mutex};

use contextvars::tracing::ContextFields;
use contextvars::{ContextVar, Local, task};
use tracing_subscriber::fmt::MakeWriter;

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
static REQUEST: Local = Local::new();

/// An in-memory log sink.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn capture(fields: ContextFields, f: impl FnOnce()) -> Vec<String> {
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .event_format(fields.wrap(tracing_subscriber::fmt::format().without_time()))
        .finish();
    tracing::subscriber::with_default(subscriber, || contextvars::Context::new().run(f));
    sink.lines()
}

#[test]
fn a_set_var_is_written_in_front_of_the_event() {
    let lines = capture(ContextFields::new().var(&REQUEST_ID), || {
        REQUEST_ID.set("req-1".into());
        tracing::info!(rows = 3, "handled");
    });
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("request_id=req-1 "), "{}", lines[0]);
    assert!(
        lines[0].contains("handled") && lines[0].contains("rows=3"),
        "{}",
        lines[0]
    );
}

#[test]
fn an_unset_var_is_left_out() {
    let lines = capture(ContextFields::new().var(&REQUEST_ID), || {
        tracing::warn!("no request here");
    });
    assert!(!lines[0].contains("request_id"), "{}", lines[0]);
    assert!(lines[0].contains("no request here"));
}

#[test]
fn several_vars_in_the_order_given() {
    let lines = capture(ContextFields::new().var(&TENANT).var(&REQUEST_ID), || {
        REQUEST_ID.set("req-2".into());
        TENANT.set("acme");
        tracing::info!("both");
    });
    assert!(
        lines[0].starts_with("tenant=acme request_id=req-2 "),
        "{}",
        lines[0]
    );
}

#[test]
fn local_attributes_of_the_right_type_are_shown() {
    let fields = ContextFields::new()
        .local::<u64>(&REQUEST, "user_id")
        .local::<u64>(&REQUEST, "wrong_type");
    let lines = capture(fields, || {
        REQUEST.set("user_id", 42u64);
        REQUEST.set("wrong_type", "not a u64");
        tracing::info!("local");
    });
    assert!(lines[0].starts_with("user_id=42 "), "{}", lines[0]);
    assert!(!lines[0].contains("wrong_type="), "{}", lines[0]);
}

#[test]
fn each_task_logs_its_own_value() {
    let lines = capture(ContextFields::new().var(&REQUEST_ID), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..20)
                .map(|i| {
                    task::spawn(async move {
                        REQUEST_ID.set(format!("req-{i}"));
                        tokio::task::yield_now().await;
                        tracing::info!(truth = i, "in task");
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    assert_eq!(lines.len(), 20);
    for line in lines {
        let shown = line.split_whitespace().next().unwrap();
        let truth = line.rsplit("truth=").next().unwrap();
        assert_eq!(shown, format!("request_id=req-{truth}"), "{line}");
    }
}
