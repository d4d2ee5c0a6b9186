//! `propagation::Baggage` (S25): chosen vars across process boundaries as W3C Baggage, through
//! opentelemetry's own `BaggagePropagator`. Round trips, bad input member by member, limits,
//! the trust boundary, foreign members, interop with opentelemetry_sdk both ways, and a fuzz of
//! the extract path.
#![cfg(feature = "opentelemetry")]

use std::collections::HashMap;

use contextvars::propagation::{Baggage, MAX_HEADER_BYTES, MAX_MEMBERS};
use contextvars::{Context, ContextVar};
use http::{HeaderMap, HeaderValue};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::BaggagePropagator;
use proptest::prelude::*;

static TENANT: ContextVar<String> = ContextVar::new("tenant");
static RETRIES: ContextVar<u32> = ContextVar::new("retries");
static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static NOT_NAMED: ContextVar<String> = ContextVar::new("not_named");
static WITH_DEFAULT: ContextVar<u32> = ContextVar::with_default("with_default", || 7);
static PATH: ContextVar<String> = ContextVar::new("app::path");

fn baggage() -> Baggage {
    Baggage::new().var(&TENANT).var(&RETRIES).var(&REQUEST_ID)
}

fn headers(value: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("baggage", HeaderValue::from_static(value));
    headers
}

fn headers_from_bytes(value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("baggage", HeaderValue::from_bytes(value).unwrap());
    headers
}

/// What `var` holds in `context`.
fn seen<T: Clone + Send + Sync + 'static>(context: &Context, var: &ContextVar<T>) -> Option<T> {
    context.get(var).map(|value| (*value).clone())
}

fn tenant_in(headers: &HeaderMap) -> Option<String> {
    seen(&baggage().extract_headers(headers), &TENANT)
}

/// The header `inject_headers` writes when TENANT is `value`.
fn injected(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    TENANT.sync_scope(value.to_owned(), || baggage().inject_headers(&mut headers));
    headers
}

const TRICKY: &[&str] = &[
    "acme",
    "50%",
    "%41",
    "%25",
    "%",
    "%zz",
    "a,b",
    "a;b",
    "k=v",
    "==",
    "a, b; c=d",
    "\"quoted\"",
    "back\\slash",
    "inner space",
    "tab\tinside",
    "line\nbreak",
    "nul\0byte",
    "+plus+",
    "caf\u{e9}",
    "日本語",
    "emoji 🎉",
    "",
    "tenant=acme,retries=3",
    "/path?query=1&x=%20",
];

// ----- round trips ----------------------------------------------------------------------------

#[test]
fn tricky_strings_round_trip_through_headers() {
    for &value in TRICKY {
        let headers = injected(value);
        let header = headers["baggage"].to_str().unwrap();
        assert!(header.starts_with("tenant="), "{header}");
        assert!(
            !header[7..].contains([',', ';', '=', ' ', '"', '\\']),
            "{header}"
        );
        assert_eq!(
            tenant_in(&headers).as_deref(),
            Some(value),
            "header {header}"
        );
    }
}

#[test]
fn tricky_strings_round_trip_through_carriers() {
    for &value in TRICKY {
        let mut carrier: HashMap<String, String> = HashMap::new();
        TENANT.sync_scope(value.to_owned(), || baggage().inject(&mut carrier));
        let context = baggage().extract(&carrier);
        assert_eq!(
            seen(&context, &TENANT).as_deref(),
            Some(value),
            "{carrier:?}"
        );
    }
}

#[test]
fn leading_and_trailing_whitespace_is_trimmed_by_the_format() {
    // The documented exception: opentelemetry trims every decoded value.
    for (sent, received) in [
        ("  acme  ", "acme"),
        ("\tacme\n", "acme"),
        (" a b ", "a b"),
        ("\u{a0}nbsp", "nbsp"),
        ("   ", ""),
    ] {
        assert_eq!(
            tenant_in(&injected(sent)).as_deref(),
            Some(received),
            "{sent:?}"
        );
    }
}

#[test]
fn typed_values_round_trip() {
    let mut headers = HeaderMap::new();
    RETRIES.sync_scope(u32::MAX, || baggage().inject_headers(&mut headers));
    assert_eq!(headers["baggage"], "retries=4294967295");
    let context = baggage().extract_headers(&headers);
    assert_eq!(seen(&context, &RETRIES), Some(u32::MAX));
    assert_eq!(seen(&context, &TENANT), None);
}

#[test]
fn var_as_uses_its_key_on_both_sides() {
    let baggage = Baggage::new().var_as("path", &PATH);
    let mut headers = HeaderMap::new();
    PATH.sync_scope("/a b".into(), || baggage.inject_headers(&mut headers));
    assert_eq!(headers["baggage"], "path=/a%20b");
    assert_eq!(
        seen(&baggage.extract_headers(&headers), &PATH).as_deref(),
        Some("/a b")
    );
}

#[test]
#[should_panic(expected = "Baggage::var: \"app::path\" is not a valid baggage key")]
fn a_var_whose_name_is_not_a_key_needs_var_as() {
    let _ = Baggage::new().var(&PATH);
}

#[test]
#[should_panic(expected = "Baggage::var_as: the baggage key \"tenant\" is used twice")]
fn a_key_used_twice_panics() {
    let _ = Baggage::new().var(&TENANT).var_as("tenant", &REQUEST_ID);
}

#[test]
fn only_bound_values_travel_not_defaults() {
    let baggage = Baggage::new().var(&WITH_DEFAULT).var(&TENANT);
    let mut headers = HeaderMap::new();
    baggage.inject_headers(&mut headers);
    assert!(headers.get("baggage").is_none(), "{headers:?}");
    let mut carrier: HashMap<String, String> = HashMap::new();
    baggage.inject(&mut carrier);
    assert!(carrier.is_empty());
}

// ----- extract: what the receiver gets ----------------------------------------------------------

#[test]
fn extract_is_a_copy_of_the_current_context() {
    let outer = NOT_NAMED.set("outer".into());
    let context = baggage().extract_headers(&headers("tenant=acme"));
    assert_eq!(seen(&context, &NOT_NAMED).as_deref(), Some("outer"));
    assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));
    assert!(TENANT.get().is_none(), "the current context is not changed");
    NOT_NAMED.reset(outer).unwrap();
}

#[test]
fn a_var_missing_from_the_header_keeps_the_current_value() {
    TENANT.sync_scope("local".into(), || {
        let context = baggage().extract_headers(&headers("retries=2"));
        assert_eq!(seen(&context, &TENANT).as_deref(), Some("local"));
        assert_eq!(seen(&context, &RETRIES), Some(2));
    });
}

#[test]
fn only_named_vars_are_read() {
    let context = Baggage::new()
        .var(&TENANT)
        .extract_headers(&headers("not_named=evil,request_id=evil,tenant=acme"));
    assert_eq!(seen(&context, &NOT_NAMED), None);
    assert_eq!(seen(&context, &REQUEST_ID), None);
    assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));
}

#[test]
fn an_empty_baggage_reads_nothing() {
    let context = Baggage::new().extract_headers(&headers("tenant=acme"));
    assert!(context.is_empty());
}

#[test]
fn several_header_lines_are_one_list() {
    let mut headers = HeaderMap::new();
    headers.append("baggage", HeaderValue::from_static("tenant=acme"));
    headers.append("baggage", HeaderValue::from_static("retries=3"));
    let context = baggage().extract_headers(&headers);
    assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));
    assert_eq!(seen(&context, &RETRIES), Some(3));
}

#[test]
fn from_str_failures_are_skipped_member_by_member() {
    RETRIES.sync_scope(1, || {
        let context = baggage().extract_headers(&headers("retries=many,tenant=acme,request_id=r1"));
        assert_eq!(seen(&context, &RETRIES), Some(1), "the current value stays");
        assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));
        assert_eq!(seen(&context, &REQUEST_ID).as_deref(), Some("r1"));
    });
    for bad in [
        "retries=-1",
        "retries=4294967296",
        "retries=",
        "retries=1.5",
    ] {
        let context = baggage().extract_headers(&headers_from_bytes(bad.as_bytes()));
        assert_eq!(seen(&context, &RETRIES), None, "{bad}");
    }
}

#[test]
fn malformed_members_are_skipped_one_by_one() {
    for bad in [
        "tenant",            // no `=`
        "tenant=a=b",        // a raw `=` opentelemetry would cut to `a`
        "tenant=%zz",        // bad escape
        "tenant=%4",         // short escape
        "tenant=ab%",        // lone `%`
        "tenant=%FF",        // decodes to invalid UTF-8
        "tenant=%C3",        // truncated UTF-8
        "tenant=caf\u{e9}",  // raw non-ASCII
        "=acme",             // no key
        "ten ant=acme",      // not a key
        "tenant=\"acme\"x=", // a raw `=` again
    ] {
        let header = format!("{bad},request_id=ok");
        let context = baggage().extract_headers(&headers_from_bytes(header.as_bytes()));
        assert_eq!(seen(&context, &TENANT), None, "{bad}");
        assert_eq!(seen(&context, &REQUEST_ID).as_deref(), Some("ok"), "{bad}");
    }
    for junk in ["", ",", ",,,", ";", "=", "==,;;", "   ", "%", "%%%"] {
        let context = baggage().extract_headers(&headers_from_bytes(junk.as_bytes()));
        assert!(context.is_empty(), "{junk:?}");
    }
}

#[test]
fn w3c_whitespace_and_properties_are_read() {
    for header in [
        "tenant=acme",
        " tenant = acme ",
        "\ttenant=acme\t,other=1",
        "tenant=acme;prop1;prop2=x",
        "other=1, tenant=acme ;p=%41",
        "ten%61nt=acme",
    ] {
        let context = baggage().extract_headers(&headers_from_bytes(header.as_bytes()));
        assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"), "{header}");
    }
}

#[test]
fn invalid_utf8_bytes_skip_only_their_member() {
    let context = baggage().extract_headers(&headers_from_bytes(
        b"tenant=\xff\xfe,retries=4,request_id=a\x80b",
    ));
    assert_eq!(seen(&context, &TENANT), None);
    assert_eq!(seen(&context, &RETRIES), Some(4));
    assert_eq!(seen(&context, &REQUEST_ID), None);
}

#[test]
fn a_header_over_the_byte_limit_is_dropped_whole() {
    let filler = "x".repeat(MAX_HEADER_BYTES);
    let header = format!("tenant=acme,other={filler}");
    assert_eq!(tenant_in(&headers_from_bytes(header.as_bytes())), None);
    // At the limit exactly, it is read.
    let pad = MAX_HEADER_BYTES - "tenant=acme,other=".len();
    let header = format!("tenant=acme,other={}", "x".repeat(pad));
    assert_eq!(header.len(), MAX_HEADER_BYTES);
    assert_eq!(
        tenant_in(&headers_from_bytes(header.as_bytes())).as_deref(),
        Some("acme")
    );
}

#[test]
fn only_the_first_64_members_are_read() {
    let members = |ours_at: usize| {
        let list: Vec<String> = (0..70)
            .map(|i| {
                if i == ours_at {
                    "tenant=acme".to_owned()
                } else {
                    format!("m{i}=v")
                }
            })
            .collect();
        headers_from_bytes(list.join(",").as_bytes())
    };
    assert_eq!(
        tenant_in(&members(MAX_MEMBERS - 1)).as_deref(),
        Some("acme")
    );
    assert_eq!(tenant_in(&members(MAX_MEMBERS)), None);
    // A malformed member, left out, still counts: the cut is where opentelemetry makes it.
    let mut list: Vec<String> = (0..MAX_MEMBERS - 1).map(|i| format!("m{i}=v")).collect();
    list[0] = "bad=%zz".into();
    list.push("tenant=acme".into());
    list.push("retries=9".into());
    let context = baggage().extract_headers(&headers_from_bytes(list.join(",").as_bytes()));
    assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));
    assert_eq!(seen(&context, &RETRIES), None);
}

// ----- inject: what the caller sends ------------------------------------------------------------

#[test]
fn foreign_members_are_kept_byte_for_byte_and_stale_ours_replaced() {
    let mut headers = headers("vendor=x%25y;p=1, tenant=stale ,other=%E6%97%A5,retries=9");
    TENANT.sync_scope("fresh".into(), || baggage().inject_headers(&mut headers));
    let header = headers["baggage"].to_str().unwrap();
    assert_eq!(header, "vendor=x%25y;p=1,other=%E6%97%A5,tenant=fresh");
    // A stale member of ours whose var is not bound here is removed: the Baggage owns its keys.
    let mut headers = headers_from_bytes(b"tenant=stale");
    baggage().inject_headers(&mut headers);
    assert!(headers.get("baggage").is_none());
    // Several lines become one; an escaped key of ours is recognised as ours.
    let mut headers = HeaderMap::new();
    headers.append("baggage", HeaderValue::from_static("a=1"));
    headers.append("baggage", HeaderValue::from_static("ten%61nt=old,b=2"));
    RETRIES.sync_scope(5, || baggage().inject_headers(&mut headers));
    assert_eq!(headers.get_all("baggage").iter().count(), 1);
    assert_eq!(headers["baggage"], "a=1,b=2,retries=5");
}

#[test]
fn foreign_members_that_are_not_utf8_are_kept_too() {
    let mut headers = headers_from_bytes(b"odd=\xff,tenant=old");
    TENANT.sync_scope("new".into(), || baggage().inject_headers(&mut headers));
    assert_eq!(headers["baggage"].as_bytes(), b"odd=\xff,tenant=new");
}

#[test]
fn our_members_go_out_in_the_order_they_were_named_every_time() {
    static A: ContextVar<u32> = ContextVar::new("a");
    static B: ContextVar<u32> = ContextVar::new("b");
    static C: ContextVar<u32> = ContextVar::new("c");
    static D: ContextVar<u32> = ContextVar::new("d");
    // opentelemetry writes from a HashMap, whose order differs between its instances.
    let baggage = Baggage::new().var(&D).var(&B).var(&A).var(&C);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let mut headers = headers("z=0,tenant=stale,y=9");
        let mut carrier = std::collections::HashMap::<String, String>::new();
        A.sync_scope(1, || {
            B.sync_scope(2, || {
                C.sync_scope(3, || {
                    D.sync_scope(4, || {
                        baggage.inject_headers(&mut headers);
                        baggage.inject(&mut carrier);
                    })
                })
            })
        });
        seen.insert(headers["baggage"].to_str().unwrap().to_owned());
        seen.insert(carrier["baggage"].clone());
    }
    let expected = ["d=4,b=2,a=1,c=3", "z=0,tenant=stale,y=9,d=4,b=2,a=1,c=3"];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn inject_into_a_carrier_writes_only_our_members() {
    let mut carrier = HashMap::from([("baggage".to_string(), "vendor=1".to_string())]);
    TENANT.sync_scope("acme".into(), || baggage().inject(&mut carrier));
    assert_eq!(carrier["baggage"], "tenant=acme");
}

#[test]
fn inject_cuts_at_member_boundaries_within_the_limits() {
    // One value too large on its own is left out; the others still go.
    let huge = "y".repeat(MAX_HEADER_BYTES);
    let mut headers = HeaderMap::new();
    TENANT.sync_scope(huge, || {
        RETRIES.sync_scope(3, || baggage().inject_headers(&mut headers));
    });
    assert_eq!(headers["baggage"], "retries=3");

    // Foreign members fill the header: ours go first, foreign ones are cut whole to fit.
    let foreign: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("f{i}=v{i}")).collect();
    let mut headers = headers_from_bytes(foreign.join(",").as_bytes());
    TENANT.sync_scope("acme".into(), || baggage().inject_headers(&mut headers));
    let header = headers["baggage"].to_str().unwrap();
    let members: Vec<&str> = header.split(',').collect();
    assert_eq!(members.len(), MAX_MEMBERS);
    assert_eq!(members.last(), Some(&"tenant=acme"));
    assert_eq!(&members[..MAX_MEMBERS - 1], &foreign[..MAX_MEMBERS - 1]);

    // Foreign bytes fill the header: cut at a member boundary, never mid-value.
    let big: Vec<String> = (0..3)
        .map(|i| format!("f{i}={}", "z".repeat(3000)))
        .collect();
    let mut headers = headers_from_bytes(big.join(",").as_bytes());
    TENANT.sync_scope("a".repeat(100), || baggage().inject_headers(&mut headers));
    let header = headers["baggage"].to_str().unwrap();
    assert!(header.len() <= MAX_HEADER_BYTES, "{}", header.len());
    let members: Vec<&str> = header.split(',').collect();
    assert_eq!(
        members,
        [&big[0], &big[1], &format!("tenant={}", "a".repeat(100))]
    );
    assert_eq!(tenant_in(&headers), Some("a".repeat(100)));
}

#[test]
fn a_member_of_ours_that_fills_the_byte_limit_exactly_still_goes() {
    // `tenant=` and the value: MAX_HEADER_BYTES bytes on the wire, no more.
    let fits = "y".repeat(MAX_HEADER_BYTES - "tenant=".len());
    let headers = injected(&fits);
    assert_eq!(headers["baggage"].len(), MAX_HEADER_BYTES);
    assert_eq!(tenant_in(&headers), Some(fits.clone()));
    // One byte more: left out whole.
    let over = format!("{fits}y");
    assert!(injected(&over).get("baggage").is_none());
    let mut carrier: HashMap<String, String> = HashMap::new();
    TENANT.sync_scope(over, || baggage().inject(&mut carrier));
    assert!(carrier.is_empty(), "{}", carrier["baggage"].len());

    // Two of ours: the `,` between them counts too.
    let both = |tenant: String| {
        let mut headers = HeaderMap::new();
        TENANT.sync_scope(tenant, || {
            RETRIES.sync_scope(3, || baggage().inject_headers(&mut headers));
        });
        headers["baggage"].to_str().unwrap().to_owned()
    };
    let fits = "y".repeat(MAX_HEADER_BYTES - "tenant=".len() - ",retries=3".len());
    let header = both(fits.clone());
    assert_eq!(header.len(), MAX_HEADER_BYTES);
    assert!(
        header.ends_with(",retries=3"),
        "{}",
        &header[header.len() - 20..]
    );
    // One byte more: the first named goes, the second is left out.
    let header = both(format!("{fits}y"));
    assert_eq!(header, format!("tenant={fits}y"));
}

#[test]
fn foreign_members_fill_what_ours_leave_to_the_byte() {
    // Ours: `tenant=acme`, 11 bytes, and the `,` before it.
    let room = MAX_HEADER_BYTES - ",tenant=acme".len();
    let foreign = |len: usize| format!("f={}", "z".repeat(len - "f=".len()));
    let mut headers = headers_from_bytes(foreign(room).as_bytes());
    TENANT.sync_scope("acme".into(), || baggage().inject_headers(&mut headers));
    assert_eq!(headers["baggage"].len(), MAX_HEADER_BYTES);
    assert_eq!(
        headers["baggage"].to_str().unwrap(),
        format!("{},tenant=acme", foreign(room))
    );
    // One byte more: the foreign member is left out whole, ours still goes.
    let mut headers = headers_from_bytes(foreign(room + 1).as_bytes());
    TENANT.sync_scope("acme".into(), || baggage().inject_headers(&mut headers));
    assert_eq!(headers["baggage"], "tenant=acme");
}

#[test]
fn many_vars_stay_within_the_limits() {
    // 80 vars of 200 bytes each: more than 64 members and more than 8,192 bytes.
    let vars: Vec<&'static ContextVar<String>> = (0..80)
        .map(|i| {
            &*Box::leak(Box::new(ContextVar::new(Box::leak(
                format!("v{i}").into_boxed_str(),
            ))))
        })
        .collect();
    let baggage = vars.iter().fold(Baggage::new(), |b, var| b.var(var));
    let mut context = Context::new();
    for var in &vars {
        context = context.with_value(var, "w".repeat(200));
    }
    let mut headers = HeaderMap::new();
    context.run(|| baggage.inject_headers(&mut headers));
    let header = headers["baggage"].to_str().unwrap();
    assert!(header.len() <= MAX_HEADER_BYTES);
    let members: Vec<&str> = header.split(',').collect();
    assert!(members.len() <= MAX_MEMBERS);
    for member in &members {
        let (key, value) = member.split_once('=').unwrap();
        assert!(key.starts_with('v'));
        assert_eq!(value, "w".repeat(200), "never cut mid-value");
    }
    // All that was sent is read back.
    let back = baggage.extract_headers(&headers);
    assert_eq!(back.len(), members.len());
}

// ----- interop with opentelemetry_sdk's BaggagePropagator ---------------------------------------

#[test]
fn a_header_written_by_opentelemetry_is_read() {
    let values = [
        "acme",
        "acme, inc.",
        "k=v",
        "caf\u{e9} 日本",
        "a;b",
        "\"q\"",
    ];
    for value in values {
        let mut otel = opentelemetry::baggage::Baggage::new();
        otel.insert("tenant", value);
        otel.insert("retries", "12");
        otel.insert_with_metadata("vendor", "x", "p=1");
        let cx = opentelemetry::Context::new().with_baggage(otel);
        let mut carrier: HashMap<String, String> = HashMap::new();
        BaggagePropagator::new().inject_context(&cx, &mut carrier);

        let context = baggage().extract(&carrier);
        assert_eq!(
            seen(&context, &TENANT).as_deref(),
            Some(value),
            "{carrier:?}"
        );
        assert_eq!(seen(&context, &RETRIES), Some(12));
        let headers = headers_from_bytes(carrier["baggage"].as_bytes());
        assert_eq!(tenant_in(&headers).as_deref(), Some(value));
    }
}

#[test]
fn a_header_written_by_us_is_read_by_opentelemetry() {
    for &value in TRICKY {
        let mut headers = headers("vendor=x;p=1");
        TENANT.sync_scope(value.to_owned(), || {
            RETRIES.sync_scope(3, || baggage().inject_headers(&mut headers));
        });
        let carrier = HashMap::from([(
            "baggage".to_string(),
            headers["baggage"].to_str().unwrap().to_owned(),
        )]);
        let cx =
            BaggagePropagator::new().extract_with_context(&opentelemetry::Context::new(), &carrier);
        let otel = cx.baggage();
        assert_eq!(
            otel.get("tenant").map(|v| v.as_str().to_owned()).as_deref(),
            Some(value.trim()),
            "{carrier:?}"
        );
        assert_eq!(otel.get("retries").map(|v| v.as_str()), Some("3"));
        assert_eq!(otel.get("vendor").map(|v| v.as_str()), Some("x"));
        assert_eq!(otel.len(), 3);
    }
}

// ----- fuzz -----------------------------------------------------------------------------------

/// A strict reading of one raw member, as the W3C format and opentelemetry's decoding define
/// it: `Some((key, value))` only if every byte is visible ASCII (or OWS), every `%` starts a
/// two-hex-digit escape, the name-value part has one `=`, and both decode to UTF-8. Then the
/// decoded, trimmed key and value.
fn strict_member(member: &[u8]) -> Option<(String, String)> {
    if !member
        .iter()
        .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
    {
        return None;
    }
    let member = std::str::from_utf8(member).ok()?;
    let name_value = member.split(';').next()?;
    let (key, value) = name_value.split_once('=')?;
    if value.contains('=') {
        return None;
    }
    Some((
        strict_decode(key)?.trim().to_owned(),
        strict_decode(value)?.trim().to_owned(),
    ))
}

fn strict_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value `key` must have after extracting `raw`: the last strictly valid member under
/// `key` among the first 64, if the header is within the byte limit.
fn expected(raw: &[u8], key: &str) -> Option<String> {
    if raw.len() > MAX_HEADER_BYTES {
        return None;
    }
    raw.split(|&b| b == b',')
        .take(MAX_MEMBERS)
        .filter_map(strict_member)
        .filter(|(k, _)| k == key)
        .last()
        .map(|(_, value)| value)
}

/// Bytes a header value may hold, weighted towards the ones that matter to the format.
const ALPHABET: &[u8] = b"tenantretris=%%%,,;;  \t\"\\/abcdefABCDEF0123456789xyz\x80\xc3\xa9\xff~";

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..16)
}

fn valid_member() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec!["tenant", "retries", "other", " tenant ", "ten%61nt"]);
    let value = prop_oneof![
        "\\PC{0,10}".prop_map(|s| percent_encoding::utf8_percent_encode(
            &s,
            percent_encoding::NON_ALPHANUMERIC
        )
        .to_string()),
        (0u64..5_000_000_000).prop_map(|n| n.to_string()),
        "[a-z ]{0,6}",
    ];
    let props = prop::sample::select(vec!["", ";p", ";p=1;q", ";%41=%zz"]);
    (key, value, props).prop_map(|(k, v, p)| format!("{k}={v}{p}").into_bytes())
}

fn member() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => valid_member(),
        2 => garbage(),
        1 => (prop::sample::select(vec!["tenant=", "retries=", "tenant = "]), garbage())
            .prop_map(|(k, g)| [k.as_bytes(), &g].concat()),
    ]
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(member(), 0..8).prop_map(|m| m.join(&b","[..])),
        1 => prop::collection::vec(member(), 60..70).prop_map(|m| m.join(&b","[..])),
        1 => (prop::collection::vec(member(), 0..4), 8150usize..8220)
            .prop_map(|(m, pad)| {
                let mut raw = m.join(&b","[..]);
                raw.extend_from_slice(b",pad=");
                raw.resize(pad.max(raw.len()), b'x');
                raw
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Never a panic; every extracted value is one that was validly encoded in the header —
    /// exactly the one the strict reading expects — and nothing else is set.
    #[test]
    fn extract_never_panics_nor_garbles(raw in header()) {
        let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()); };
        let mut headers = HeaderMap::new();
        headers.insert("baggage", value);
        let context = baggage().extract_headers(&headers);

        prop_assert_eq!(seen(&context, &TENANT), expected(&raw, "tenant"));
        let retries = expected(&raw, "retries").and_then(|text| text.parse::<u32>().ok());
        prop_assert_eq!(seen(&context, &RETRIES), retries);
        prop_assert!(context.len() <= 2, "only named vars: {:?}", context);

        // The carrier path reads the same.
        if let Ok(text) = std::str::from_utf8(&raw) {
            let carrier = HashMap::from([("baggage".to_string(), text.to_owned())]);
            let via_carrier = baggage().extract(&carrier);
            prop_assert_eq!(seen(&via_carrier, &TENANT), seen(&context, &TENANT));
            prop_assert_eq!(seen(&via_carrier, &RETRIES), seen(&context, &RETRIES));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whatever a member of ours held, injecting leaves exactly one member under our key: the
    /// fresh one, last.
    #[test]
    fn inject_leaves_one_member_of_ours_whatever_the_stale_one_held(
        value in proptest::collection::vec(
            prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..24),
    ) {
        let mut raw = b"a=1,tenant=".to_vec();
        raw.extend_from_slice(&value);
        let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()); };
        if raw.iter().filter(|&&b| b == b',').count() > 1 {
            return Ok(()); // a comma in the value starts another member
        }
        let mut headers = HeaderMap::new();
        headers.insert("baggage", value);
        TENANT.sync_scope("fresh".into(), || baggage().inject_headers(&mut headers));
        prop_assert_eq!(headers["baggage"].as_bytes(), b"a=1,tenant=fresh");
    }

    /// Any string round-trips, trimmed of leading and trailing whitespace.
    #[test]
    fn any_string_round_trips_but_for_outer_whitespace(value in any::<String>()) {
        let headers = injected(&value);
        let back = tenant_in(&headers);
        prop_assert_eq!(back.as_deref(), Some(value.trim()));
        // And opentelemetry reads the same.
        let carrier = HashMap::from([(
            "baggage".to_string(),
            headers["baggage"].to_str().unwrap().to_owned(),
        )]);
        let cx = BaggagePropagator::new().extract_with_context(&opentelemetry::Context::new(), &carrier);
        prop_assert_eq!(cx.baggage().get("tenant").map(|v| v.as_str()), Some(value.trim()));
    }
}

#[test]
fn stale_members_of_ours_go_whatever_their_value() {
    // Values opentelemetry cannot decode: the member is still ours, and stale.
    for stale in [
        &b"tenant=%FF"[..],
        b"tenant=%C3",
        b"tenant=%ED%A0%80",
        b"tenant=caf\xe9",
        b"tenant=a b",
        b"tenant=\"x\"",
        b" tenant = x;%FF",
        b"ten%61nt=%FF",
        // Keys that opentelemetry reads as `tenant`: decoded, then trimmed.
        b"tenant%20=stale",
        b"%20tenant=stale",
        b"tenant%09=stale",
        b"tenant%C2%A0=stale",
        // No value: malformed, but under our key (the text before `=` or `;`).
        b"tenant",
        b"tenant;p=1",
    ] {
        let mut raw = stale.to_vec();
        raw.extend_from_slice(b",x=1");
        let mut headers = headers_from_bytes(&raw);
        TENANT.sync_scope("fresh".into(), || baggage().inject_headers(&mut headers));
        assert_eq!(
            headers["baggage"],
            "x=1,tenant=fresh",
            "{:?}",
            stale.escape_ascii()
        );
        let mut headers = headers_from_bytes(&raw);
        baggage().inject_headers(&mut headers); // not bound here: removed
        assert_eq!(headers["baggage"], "x=1", "{:?}", stale.escape_ascii());
    }
    // Not ours: another key, a key that only contains ours, a member with no key.
    let mut headers = headers("tenants=1,xtenant=2,=3,;tenant=4");
    TENANT.sync_scope("t".into(), || baggage().inject_headers(&mut headers));
    assert_eq!(
        headers["baggage"],
        "tenants=1,xtenant=2,=3,;tenant=4,tenant=t"
    );
}

#[test]
fn baggage_is_cheap_to_clone_and_shows_its_keys() {
    let baggage = baggage();
    let copy = baggage.clone();
    assert_eq!(copy.keys(), ["tenant", "retries", "request_id"]);
    let debug = format!("{baggage:?}");
    assert!(debug.contains("\"tenant\": \"tenant\""), "{debug}");
}

/// The `WARN` events `f` emits on `contextvars::propagation`, as `message key=value ...`.
#[cfg(feature = "tracing")]
fn warn_events(f: impl FnOnce()) -> Vec<(String, String)> {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<(String, String)>>>);

    impl<S: tracing::Subscriber> Layer<S> for Warnings {
        fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
            struct Line(String);
            impl Visit for Line {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    match field.name() {
                        "message" => self.0.insert_str(0, &format!("{value:?}")),
                        name => write!(self.0, " {name}={value:?}").unwrap(),
                    }
                }
            }
            let metadata = event.metadata();
            if *metadata.level() == tracing::Level::WARN {
                let mut line = Line(String::new());
                event.record(&mut line);
                let target = metadata.target().to_owned();
                self.0.lock().unwrap().push((target, line.0));
            }
        }
    }

    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::with_default(subscriber, f);
    warnings.0.lock().unwrap().clone()
}

/// The `WARN` events of this crate's propagation module while `f` runs.
#[cfg(feature = "tracing")]
fn warnings(f: impl FnOnce()) -> Vec<String> {
    warn_events(f)
        .into_iter()
        .filter(|(target, _)| target == "contextvars::propagation")
        .map(|(_, line)| line)
        .collect()
}

#[test]
#[cfg(feature = "tracing")]
fn every_skipped_or_left_out_member_is_reported_and_the_rest_still_travels() {
    // A value that does not parse: that member alone.
    let mut context = Context::new();
    let reported = warnings(|| {
        context = baggage().extract_headers(&headers("retries=many,tenant=acme"));
    });
    assert_eq!(
        reported,
        [
            "baggage: member skipped: its value does not parse as the variable's type key=\"retries\""
        ]
    );
    assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));

    // Malformed members of ours: one event each, with the key, in the order they were named.
    // Those this module leaves out (a bad escape, a raw `=`) and those opentelemetry drops (no `=`,
    // an escape that is not UTF-8) alike; a bad member under another key is not reported.
    const MALFORMED: &str = "baggage: member skipped: malformed (no `=`, a raw `=` in its value, \
                             a bad percent-escape or one that is not UTF-8, or a byte that is \
                             not visible ASCII)";
    for header in [
        "tenant=%zz,retries=2,request_id=a=b",
        "request_id;p=1,tenant,retries=2",
        "tenant=%FF,retries=2,other=%zz,request_id=%C3%28",
        "other,tenant=caf\u{e9},retries=2,request_id= =",
    ] {
        let reported = warnings(|| {
            context = baggage().extract_headers(&headers_from_bytes(header.as_bytes()));
        });
        let expected = [
            format!("{MALFORMED} key=\"tenant\""),
            format!("{MALFORMED} key=\"request_id\""),
        ];
        assert_eq!(reported, expected, "{header}");
        assert_eq!(seen(&context, &RETRIES), Some(2), "{header}");
    }
    // A bad member under a key that is not ours is not reported.
    assert!(warnings(|| drop(baggage().extract_headers(&headers("other=%zz,x,y=%FF")))).is_empty());

    // A member of ours past the first 64: not read, and reported as such.
    let filler: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("f{i}=v")).collect();
    let header = format!("{},tenant=acme", filler.join(","));
    let reported = warnings(|| {
        context = baggage().extract_headers(&headers_from_bytes(header.as_bytes()));
    });
    assert_eq!(
        reported,
        [format!(
            "baggage: member skipped: past the first {MAX_MEMBERS} members key=\"tenant\""
        )]
    );
    assert!(context.is_empty());

    // A header over the limit: dropped whole.
    let header = format!("tenant=acme,other={}", "x".repeat(MAX_HEADER_BYTES));
    let reported = warnings(|| {
        context = baggage().extract_headers(&headers_from_bytes(header.as_bytes()));
    });
    let expected = format!(
        "baggage: incoming header over {MAX_HEADER_BYTES} bytes dropped bytes={}",
        header.len()
    );
    assert_eq!(reported, [expected]);
    assert!(context.is_empty());

    // Outgoing: our value too large on its own, and foreign members past the member limit.
    let foreign: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("f{i}=v{i}")).collect();
    let mut outgoing = headers_from_bytes(foreign.join(",").as_bytes());
    let huge = "y".repeat(MAX_HEADER_BYTES);
    let reported = warnings(|| {
        TENANT.sync_scope(huge, || {
            RETRIES.sync_scope(3, || baggage().inject_headers(&mut outgoing));
        });
    });
    assert_eq!(
        reported,
        [
            format!(
                "baggage: member left out: the header would exceed the limits key=\"tenant\" bytes={MAX_HEADER_BYTES}"
            ),
            "baggage: members of the outgoing header left out to stay within the limits dropped=1"
                .to_owned(),
        ]
    );
    let header = outgoing["baggage"].to_str().unwrap();
    assert!(header.ends_with(",retries=3"), "{header}");

    // A clean header reports nothing.
    assert!(warnings(|| drop(baggage().extract_headers(&headers("tenant=acme")))).is_empty());
}

/// opentelemetry-http's `HeaderInjector`: `set` *replaces* the header.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            http::HeaderName::from_bytes(key.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
}

/// A service with a global composite propagator (trace context + baggage) puts
/// `Baggage::propagator()` in place of `BaggagePropagator`: one injection writes the
/// OpenTelemetry members and ours, in one header, whatever the order of the propagators.
#[test]
fn propagator_writes_otel_baggage_and_ours_in_one_header() {
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::KeyValueMetadata;
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    let otel = opentelemetry::Context::new().with_baggage([
        KeyValueMetadata::new("plan", "gold", "ttl=30"),
        KeyValueMetadata::from(KeyValue::new("tenant", "stale")),
    ]);
    for ours_first in [false, true] {
        let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(baggage().propagator()),
        ];
        if ours_first {
            propagators.reverse();
        }
        let composite = TextMapCompositePropagator::new(propagators);
        let mut headers = HeaderMap::new();
        TENANT.sync_scope("50%, inc.".to_owned(), || {
            composite.inject_context(&otel, &mut HeaderInjector(&mut headers));
        });
        assert_eq!(headers.get_all("baggage").iter().count(), 1);
        assert_eq!(
            headers["baggage"],
            "plan=gold;ttl=30,tenant=50%25%2C%20inc."
        );
        // The receiver: this crate reads its variable, opentelemetry its Baggage.
        assert_eq!(tenant_in(&headers).as_deref(), Some("50%, inc."));
        let extracted = composite.extract(&HeaderExtractorForTest(&headers));
        let otel_seen = extracted.baggage();
        assert_eq!(otel_seen.get("plan").map(|v| v.as_str()), Some("gold"));
        assert_eq!(
            otel_seen.get_with_metadata("plan").map(|(_, m)| m.as_str()),
            Some("ttl=30")
        );
        assert_eq!(
            otel_seen.get("tenant").map(|v| v.as_str()),
            Some("50%, inc.")
        );
    }

    // Not bound here: an OpenTelemetry member under our key is not sent (as `inject_headers`).
    let mut headers = HeaderMap::new();
    baggage()
        .propagator()
        .inject_context(&otel, &mut HeaderInjector(&mut headers));
    assert_eq!(headers["baggage"], "plan=gold;ttl=30");
    // Nothing at all: no header.
    let mut headers = HeaderMap::new();
    baggage().propagator().inject_context(
        &opentelemetry::Context::new(),
        &mut HeaderInjector(&mut headers),
    );
    assert!(headers.get("baggage").is_none());
}

/// An edge (the module docs, "Next to OpenTelemetry's propagators" and "Bad input"): its global
/// propagator extracts a client's `baggage` header into the OpenTelemetry `Baggage`, and the
/// edge sets `TENANT` itself. With opentelemetry's `BaggagePropagator` injecting *after* ours,
/// the client's `tenant` replaces the edge's on the way out, and the next service reads it;
/// with `Baggage::propagator()` in its place, the edge's value goes out, in either order.
#[test]
fn an_opentelemetry_injection_after_ours_sends_the_clients_members_under_our_keys() {
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    let incoming = headers("tenant=evil,vendor=x");
    for ours_in_composite in [false, true] {
        let baggage_propagator: Box<dyn TextMapPropagator + Send + Sync> = match ours_in_composite {
            false => Box::new(BaggagePropagator::new()),
            true => Box::new(baggage().propagator()),
        };
        let composite = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            baggage_propagator,
        ]);
        let otel = composite.extract(&HeaderExtractorForTest(&incoming));
        let mut outgoing = HeaderMap::new();
        TENANT.sync_scope("acme".to_owned(), || {
            baggage().inject_headers(&mut outgoing); // `PropagateLayer`, the outer layer
            composite.inject_context(&otel, &mut HeaderInjector(&mut outgoing)); // an inner one
        });
        let downstream = tenant_in(&outgoing);
        match ours_in_composite {
            false => assert_eq!(downstream.as_deref(), Some("evil"), "{outgoing:?}"),
            true => assert_eq!(downstream.as_deref(), Some("acme"), "{outgoing:?}"),
        }
    }
}

/// opentelemetry-http's `HeaderExtractor`: every line of a field, through `get_all`.
struct HeaderExtractorForTest<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractorForTest<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then_some(all)
    }
}

/// opentelemetry_sdk (its `internal-logs` feature is on by default) warns of every member it
/// skips, quoting the whole header, every other member's value included. The members it would
/// skip never reach it, so an extract makes no such warning; ours are still reported by key.
#[cfg(feature = "tracing")]
#[test]
fn an_extract_makes_opentelemetry_quote_no_header() {
    for (raw, reported) in [
        ("tenant=50%,request_id=secret-7", Some("tenant")), // a bad escape: ours, reported
        ("tenant=%FF,request_id=secret-7", Some("tenant")), // not UTF-8
        ("tenant,request_id=secret-7", Some("tenant")),     // no `=`
        ("request_id=secret-7,", None),                     // an empty member
        ("request_id=secret-7,,other=1", None),
        ("tenant=50%,junk,request_id=secret-7", Some("tenant")), // a foreign one without `=`
        ("other=%C3%28,request_id=secret-7", None), // a foreign escape that is not UTF-8
        (" ,request_id=secret-7", None),
    ] {
        let headers = headers(raw);
        let mut context = None;
        let events = warn_events(|| context = Some(baggage().extract_headers(&headers)));
        let context = context.unwrap();
        assert_eq!(
            seen(&context, &REQUEST_ID).as_deref(),
            Some("secret-7"),
            "{raw}"
        );
        assert_eq!(seen(&context, &TENANT), None, "{raw}");
        let ours: Vec<&str> = events
            .iter()
            .filter(|(target, _)| target == "contextvars::propagation")
            .map(|(_, line)| line.as_str())
            .collect();
        assert!(
            events
                .iter()
                .all(|(target, _)| target == "contextvars::propagation"),
            "{raw}: {events:?}"
        );
        assert!(
            events.iter().all(|(_, line)| !line.contains("secret-7")),
            "{raw}: {events:?}"
        );
        match reported {
            Some(key) => assert!(
                ours.len() == 1 && ours[0].contains(&format!("key={key:?}")),
                "{raw}: {ours:?}"
            ),
            None => assert!(ours.is_empty(), "{raw}: {ours:?}"),
        }
    }
    // An empty header: nothing read, nothing reported.
    let events = warn_events(|| drop(baggage().extract_headers(&headers(""))));
    assert!(events.is_empty(), "{events:?}");

    // Past the limit, as before: only the first MAX_MEMBERS members are read.
    let mut raw: Vec<String> = vec!["tenant=%zz".into()];
    raw.extend((1..MAX_MEMBERS).map(|i| format!("k{i}=v")));
    raw.push("request_id=late".into());
    let context = baggage().extract_headers(&headers_from_bytes(raw.join(",").as_bytes()));
    assert_eq!(seen(&context, &REQUEST_ID), None);
}

/// opentelemetry writes a `%` in a value as it is (the module docs): what a receiver makes of
/// it depends on what follows.
#[test]
fn a_percent_in_an_opentelemetry_value_arrives_decoded_or_skipped() {
    for (value, read) in [("50%", None), ("5%41", Some("5A")), ("100% sure", None)] {
        let otel = opentelemetry::Context::new()
            .with_baggage([opentelemetry::KeyValue::new("tenant", value)]);
        let mut carrier = HashMap::new();
        BaggagePropagator::new().inject_context(&otel, &mut carrier);
        assert!(carrier["baggage"].contains('%'), "{carrier:?}");
        let context = baggage().extract(&carrier);
        assert_eq!(seen(&context, &TENANT).as_deref(), read, "{value}");
    }
}

/// opentelemetry-http's `HeaderInjector`: "Does nothing if the key or value are not valid
/// inputs."
struct CheckedHeaderInjector<'a>(&'a mut HeaderMap);

impl opentelemetry::propagation::Injector for CheckedHeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// opentelemetry decodes an incoming property (`%0A`, `%2C`) and writes it back raw: a member
/// with a control character would make the header one no client sends (ours lost with it), one
/// with a comma would be read as two members. The propagator leaves such members out, keeps
/// the rest in key order, and ours go out.
#[test]
fn the_propagator_leaves_out_an_opentelemetry_member_no_header_can_carry() {
    let incoming = headers("zeta=1,plan=gold;note%0Aevil,alpha=2;x%2Cy,mid=3;ttl=30");
    let otel = BaggagePropagator::new().extract_with_context(
        &opentelemetry::Context::new(),
        &HeaderExtractorForTest(&incoming),
    );
    assert_eq!(
        otel.baggage()
            .get_with_metadata("plan")
            .map(|(_, m)| m.as_str().to_owned()),
        Some("note\nevil".to_owned())
    );
    let inject = || {
        let mut outgoing = HeaderMap::new();
        TENANT.sync_scope("acme".to_owned(), || {
            baggage()
                .propagator()
                .inject_context(&otel, &mut CheckedHeaderInjector(&mut outgoing));
        });
        outgoing
    };
    for _ in 0..20 {
        // The same header every time: opentelemetry's own order changes from call to call.
        assert_eq!(inject()["baggage"], "mid=3;ttl=30,zeta=1,tenant=acme");
    }
    #[cfg(feature = "tracing")]
    {
        let reported = warnings(|| drop(inject()));
        assert!(
            reported.len() == 1
                && reported[0].contains("left out")
                && !reported[0].contains("evil"),
            "{reported:?}"
        );
    }
}

/// A propagator injection that leaves no member out makes no report: the `WARN` event is for
/// members left out, not one per outgoing request.
#[cfg(feature = "tracing")]
#[test]
fn a_propagator_injection_that_leaves_nothing_out_reports_nothing() {
    let otel =
        opentelemetry::Context::new().with_baggage([opentelemetry::KeyValue::new("plan", "gold")]);
    let mut carrier = HashMap::new();
    let reported = warnings(|| {
        TENANT.sync_scope("acme".to_owned(), || {
            baggage().propagator().inject_context(&otel, &mut carrier);
        });
    });
    assert_eq!(carrier["baggage"], "plan=gold,tenant=acme");
    assert!(reported.is_empty(), "{reported:?}");
}

#[test]
fn every_value_of_a_carrier_field_is_read_as_one_list() {
    let mut headers = HeaderMap::new();
    headers.append("baggage", HeaderValue::from_static("tenant=acme"));
    headers.append("baggage", HeaderValue::from_static("retries=3"));
    let context = baggage().extract(&HeaderExtractorForTest(&headers));
    assert_eq!(seen(&context, &TENANT).as_deref(), Some("acme"));
    assert_eq!(seen(&context, &RETRIES), Some(3));
}
