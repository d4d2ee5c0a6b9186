//! `contextvars::tracing`: context variables on every `tracing` event.
#![cfg(all(feature = "tracing", feature = "tokio"))]

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
    capture_with(fields, false, f)
}

fn capture_with(fields: ContextFields, ansi: bool, f: impl FnOnce()) -> Vec<String> {
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(ansi)
        .event_format(fields.wrap(tracing_subscriber::fmt::format().without_time()))
        .finish();
    tracing::subscriber::with_default(subscriber, || contextvars::Context::new().run(f));
    sink.lines()
}

/// `tasks` interleaved tasks on a current-thread runtime (`with_default` sets the subscriber
/// for this thread only), each setting its own `req-{i}` and logging `truth = i` after a yield.
fn log_from_tasks(tasks: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..tasks)
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
    let lines = capture(ContextFields::new().var(&REQUEST_ID), || log_from_tasks(20));
    assert_eq!(lines.len(), 20);
    for line in lines {
        let shown = line.split_whitespace().next().unwrap();
        let truth = line.rsplit("truth=").next().unwrap();
        assert_eq!(shown, format!("request_id=req-{truth}"), "{line}");
    }
}

/// Every line a JSON subscriber with `fields` writes while `f` runs, parsed.
fn capture_json(fields: ContextFields, ansi: bool, f: impl FnOnce()) -> Vec<serde_json::Value> {
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(sink.clone())
        .with_ansi(ansi)
        .event_format(fields.wrap(tracing_subscriber::fmt::format().json()))
        .finish();
    tracing::subscriber::with_default(subscriber, || contextvars::Context::new().run(f));
    sink.lines()
        .iter()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect()
}

#[test]
fn json_lines_get_the_vars_as_top_level_keys() {
    for ansi in [false, true] {
        let lines = capture_json(
            ContextFields::new().var(&TENANT).var(&REQUEST_ID),
            ansi,
            || {
                REQUEST_ID.set("req-1".into());
                TENANT.set("acme");
                tracing::info!(rows = 3, "handled");
            },
        );
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["request_id"], "req-1", "{line}");
        assert_eq!(line["tenant"], "acme", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["fields"]["message"], "handled", "{line}");
        assert_eq!(line["fields"]["rows"], 3, "{line}");
    }
}

#[test]
fn json_values_are_escaped() {
    let lines = capture_json(ContextFields::new().var(&REQUEST_ID), false, || {
        REQUEST_ID.set("a \"quoted\" \\ back\nslash\u{1}é".into());
        tracing::info!("escaped");
    });
    assert_eq!(lines[0]["request_id"], "a \"quoted\" \\ back\nslash\u{1}é");
}

#[test]
fn json_unset_var_writes_nothing() {
    let lines = capture_json(ContextFields::new().var(&REQUEST_ID), false, || {
        tracing::warn!("no request here");
        REQUEST_ID.set("req-9".into());
        tracing::warn!("a request");
    });
    assert_eq!(lines.len(), 2);
    assert!(lines[0].get("request_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[0]["fields"]["message"], "no request here");
    assert_eq!(lines[1]["request_id"], "req-9");
}

#[test]
fn json_each_task_logs_its_own_value() {
    let lines = capture_json(ContextFields::new().var(&REQUEST_ID), false, || {
        log_from_tasks(50)
    });
    assert_eq!(lines.len(), 50);
    for line in lines {
        let truth = line["fields"]["truth"].as_u64().unwrap();
        assert_eq!(line["request_id"], format!("req-{truth}"), "{line}");
    }
}

/// A formatter of one's own, for the tests of `wrap`: the line (without its newline) made from
/// the event's target and its fields as the subscriber formats them.
struct LineFormat(fn(&str, &str) -> String);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::FormatFields as _;
        let mut fields = String::new();
        ctx.format_fields(
            tracing_subscriber::fmt::format::Writer::new(&mut fields),
            event,
        )?;
        writeln!(writer, "{}", (self.0)(event.metadata().target(), &fields))
    }
}

/// A subscriber that writes through `own` behind `ContextFields::var(&REQUEST_ID)`, ANSI off,
/// and the sink it writes to.
fn own_format(own: LineFormat) -> (Captured, impl tracing::Subscriber + Send + Sync) {
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .event_format(ContextFields::new().var(&REQUEST_ID).wrap(own))
        .finish();
    (sink, subscriber)
}

#[test]
fn a_json_object_that_closes_at_once_stays_valid() {
    // A formatter whose object has no members of its own.
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .event_format(
            ContextFields::new()
                .var(&TENANT)
                .var(&REQUEST_ID)
                .wrap(LineFormat(|_, _| "{}".to_owned())),
        )
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        contextvars::Context::new().run(|| {
            tracing::info!("empty");
            TENANT.set("acme");
            tracing::info!("one");
            REQUEST_ID.set("r".into());
            tracing::info!("two");
        })
    });
    assert_eq!(
        sink.lines(),
        [
            "{}",
            r#"{"tenant":"acme"}"#,
            r#"{"tenant":"acme","request_id":"r"}"#
        ]
    );
}

#[test]
fn a_text_line_that_starts_with_a_brace_gets_the_fields_in_front() {
    // tracing-subscriber's text format with nothing before the message: the line starts with
    // the message's `{`, and is still a text line, not a JSON object to splice into.
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .event_format(
            ContextFields::new().var(&REQUEST_ID).wrap(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_level(false)
                    .with_target(false),
            ),
        )
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        contextvars::Context::new().run(|| {
            tracing::info!("{{not json}}");
            REQUEST_ID.set("r-1".into());
            tracing::info!("{{not json}}");
        })
    });
    assert_eq!(sink.lines(), ["{not json}", "request_id=r-1 {not json}"]);
}

#[test]
fn a_formatter_of_ones_own_gets_the_fields_by_its_first_byte() {
    // Text or JSON, told by the line it writes: `{` starts an object.
    let own = LineFormat(|target, fields| {
        if target.ends_with("json") {
            format!("{{\"event\":\"{fields}\"}}")
        } else {
            format!("event: {fields}")
        }
    });
    let (sink, subscriber) = own_format(own);
    // Longer than the buffer a thread keeps between lines, then short again.
    let long = "x".repeat(40_000);
    tracing::subscriber::with_default(subscriber, || {
        contextvars::Context::new().run(|| {
            tracing::info!(target: "text", "one");
            REQUEST_ID.set("r-1".into());
            tracing::info!(target: "text", "two");
            tracing::info!(target: "json", "three");
            tracing::info!(target: "text", "{long}");
            tracing::info!(target: "json", "four");
        })
    });
    let lines = sink.lines();
    assert_eq!(
        lines,
        [
            "event: one".to_string(),
            "request_id=r-1 event: two".to_string(),
            r#"{"request_id":"r-1","event":"three"}"#.to_string(),
            format!("request_id=r-1 event: {long}"),
            r#"{"request_id":"r-1","event":"four"}"#.to_string(),
        ]
    );
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug only
struct User {
    id: u64,
    roles: Vec<&'static str>,
}

static USER: ContextVar<User> = ContextVar::new("user");
static ROLES: ContextVar<Vec<&'static str>> = ContextVar::new("roles");

#[test]
fn non_display_vars_through_a_function_or_debug() {
    let fields = || {
        ContextFields::new()
            .var_fmt(&USER, |user, f| write!(f, "u{}", user.id))
            .var_debug(&ROLES)
    };
    let set = || {
        USER.set(User {
            id: 7,
            roles: vec!["admin"],
        });
        ROLES.set(vec!["admin", "ops"]);
        tracing::info!("who");
    };
    let text = capture(fields(), set);
    assert!(
        text[0].starts_with(r#"user=u7 roles=["admin", "ops"] "#),
        "{}",
        text[0]
    );
    let json = capture_json(fields(), false, set);
    assert_eq!(json[0]["user"], "u7");
    assert_eq!(json[0]["roles"], r#"["admin", "ops"]"#);
}

#[test]
fn coloured_text_lines_keep_the_fields_in_front() {
    let lines = capture_with(ContextFields::new().var(&REQUEST_ID), true, || {
        REQUEST_ID.set("req-3".into());
        tracing::info!("coloured");
    });
    assert!(lines[0].starts_with("request_id=req-3 "), "{}", lines[0]);
    assert!(lines[0].contains('\u{1b}'), "colours kept: {:?}", lines[0]);
}

static LEVEL: ContextVar<u8> = ContextVar::with_default("level", || 1);

#[test]
fn a_default_is_shown_like_a_value() {
    let lines = capture(ContextFields::new().var(&LEVEL), || tracing::info!("d"));
    assert!(lines[0].starts_with("level=1 "), "{}", lines[0]);
}

#[test]
fn missing_local_attributes_write_nothing() {
    let lines = capture(
        ContextFields::new().local::<u64>(&REQUEST, "absent"),
        || {
            tracing::info!("no attribute");
        },
    );
    assert!(lines[0].trim_start().starts_with("INFO"), "{}", lines[0]);
    assert!(!lines[0].contains("absent"), "{}", lines[0]);
}

/// A value a client could have sent: a line break that would start a forged line, an ANSI
/// sequence that clears the terminal, a C1 control, a tab and a bell.
const HOSTILE: &str = "abc\n ERROR auth: admin login ok\u{1b}[2J\u{9b}x\t\u{7}\r\u{2028}fake\u{202e}txt.exe – ok\u{61c}";
const ESCAPED: &str = "abc\\n ERROR auth: admin login ok\\x1b[2J\\u{9b}x\\t\\x07\\r\\u{2028}fake\\u{202e}txt.exe – ok\\u{61c}";

#[test]
fn control_characters_in_text_values_are_escaped_unless_sanitization_is_off() {
    let hostile = || {
        REQUEST_ID.set(HOSTILE.into());
        tracing::info!("handled");
    };
    let expected = format!("request_id={ESCAPED} ");
    // Plain text and coloured text: one line each, starting with the escaped value.
    for ansi in [false, true] {
        let lines = capture_with(ContextFields::new().var(&REQUEST_ID), ansi, hostile);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(&expected), "{:?}", lines[0]);
    }
    // A formatter of one's own (the line is buffered, then told text or JSON).
    let own = LineFormat(|_, fields| format!("event: {fields}"));
    let (sink, subscriber) = own_format(own);
    tracing::subscriber::with_default(subscriber, || contextvars::Context::new().run(hostile));
    assert_eq!(sink.lines(), [format!("{expected}event: handled")]);

    // Turned off in tracing-subscriber, as for its own messages: written as it is.
    let sink = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .with_ansi_sanitization(false)
        .event_format(
            ContextFields::new()
                .var(&REQUEST_ID)
                .wrap(tracing_subscriber::fmt::format().without_time()),
        )
        .finish();
    tracing::subscriber::with_default(subscriber, || contextvars::Context::new().run(hostile));
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.starts_with(&format!("request_id={HOSTILE} ")),
        "{text:?}"
    );
}

#[test]
fn each_kind_of_control_character_is_escaped_on_its_own() {
    // HOSTILE holds every kind at once, so one of them is enough to take the escaping path.
    // A value holding a single one (a lone line break, DEL, a C1 control, a line separator, a
    // bidirectional control) must be escaped too.
    for (value, escaped) in [
        ("\n", "\\n"),
        ("\u{1b}", "\\x1b"),
        ("\u{7f}", "\\x7f"),
        ("\u{80}", "\\u{80}"),
        ("\u{9b}", "\\u{9b}"),
        ("\u{2028}", "\\u{2028}"),
        ("\u{202e}", "\\u{202e}"),
        ("\u{61c}", "\\u{61c}"),
    ] {
        let lines = capture(ContextFields::new().var(&REQUEST_ID), || {
            REQUEST_ID.set(value.into());
            tracing::info!("handled");
        });
        assert_eq!(lines.len(), 1, "{value:?}: {lines:?}");
        let expected = format!("request_id={escaped} ");
        assert!(lines[0].starts_with(&expected), "{value:?}: {:?}", lines[0]);
    }
}

static BOOM: ContextVar<u32> = ContextVar::new("boom");

/// A field whose formatting panics on 1 and fails on 2.
fn fragile_fields() -> ContextFields {
    ContextFields::new()
        .var(&REQUEST_ID)
        .var_fmt(&BOOM, |n, f| {
            f.write_str("part-")?;
            match n {
                1 => panic!("a Display that panics"),
                _ => Err(std::fmt::Error),
            }
        })
}

/// Logs with the fragile field panicking, then failing, then with another request's id.
fn fragile_events() {
    REQUEST_ID.set("victim".into());
    BOOM.sync_scope(1, || tracing::info!("first"));
    BOOM.sync_scope(2, || tracing::info!("second"));
    REQUEST_ID.set("next".into());
    tracing::info!("third");
}

#[test]
fn a_value_whose_formatting_panics_or_fails_ends_in_a_placeholder_and_the_line_goes_on() {
    // Before: the panic left "request_id=victim boom=part-" in tracing-subscriber's buffer, in
    // front of the thread's next line (another request's), and the error dropped the event.
    let lines = capture(fragile_fields(), fragile_events);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("request_id=victim boom=part-<panicked> ")
            && lines[0].ends_with("first"),
        "{:?}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("request_id=victim boom=part-<fmt error> ")
            && lines[1].ends_with("second"),
        "{:?}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("request_id=next ") && !lines[2].contains("victim"),
        "{:?}",
        lines[2]
    );

    let lines = capture_json(fragile_fields(), false, fragile_events);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["boom"], "part-<panicked>");
    assert_eq!(lines[1]["boom"], "part-<fmt error>");
    assert_eq!(lines[2]["request_id"], "next");
    assert_eq!(lines[2]["fields"]["message"], "third");
}

#[test]
#[should_panic(expected = "a field named \"request_id\" is already in the list")]
fn a_field_name_given_twice_is_refused() {
    static ANOTHER_REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    let _ = ContextFields::new()
        .var(&REQUEST_ID)
        .var(&ANOTHER_REQUEST_ID);
}
