//! Chosen variables across process boundaries, as W3C Baggage (S25).
//!
//! A [`Baggage`] names the variables that travel and the baggage keys they travel under. The
//! caller writes the values bound in its current context into an outgoing request
//! ([`inject_headers`](Baggage::inject_headers), [`inject`](Baggage::inject),
//! [`tower::PropagateLayer`]); the receiver reads them into a copy of its context
//! ([`extract_headers`](Baggage::extract_headers), [`extract`](Baggage::extract),
//! [`tower::ContextLayer::extract`]).
//! Values go out with [`Display`](fmt::Display) and come back with [`FromStr`], so a typed
//! variable arrives typed.
//!
//! The wire format is the standard `baggage` header that every tracing system already reads,
//! written and read by opentelemetry's own `BaggagePropagator` (from `opentelemetry_sdk`): this
//! module has no header parser of its own.
//!
//! ```
//! use contextvars::ContextVar;
//! use contextvars::propagation::Baggage;
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//! static USER_ID: ContextVar<u64> = ContextVar::new("user_id");
//!
//! let baggage = Baggage::new().var(&TENANT).var_as("uid", &USER_ID);
//!
//! // In the caller: the values bound in its context go into the request's headers.
//! let mut headers = http::HeaderMap::new();
//! TENANT.sync_scope("acme, inc.".to_string(), || {
//!     USER_ID.sync_scope(42, || baggage.inject_headers(&mut headers));
//! });
//! let header = headers["baggage"].to_str().unwrap();
//! assert!(header.contains("tenant=acme%2C%20inc.") && header.contains("uid=42"), "{header}");
//!
//! // In the receiver: a copy of its context with every variable found in the headers set.
//! let mut context = baggage.extract_headers(&headers);
//! context.run(|| {
//!     assert_eq!(TENANT.get().as_deref().map(String::as_str), Some("acme, inc."));
//!     assert_eq!(USER_ID.get().as_deref(), Some(&42));
//! });
//! assert!(TENANT.get().is_none()); // the receiver's own context is untouched
//! ```
//!
//! # What round-trips
//!
//! Every value is percent-encoded by this module before opentelemetry sees it: `%` (which
//! opentelemetry passes through unescaped, so `50%25` would come back as `50%`), the
//! separators `,` `;` `=`, quotes, backslashes, spaces, control characters and every non-ASCII
//! byte. So any string round-trips exactly — **except leading and trailing whitespace**, which
//! the format trims on the way in (opentelemetry applies `str::trim` to every decoded value;
//! spaces inside a value are kept). A type whose `Display` output starts or ends with
//! whitespace therefore arrives trimmed, and must parse from the trimmed text.
//!
//! # Bad input
//!
//! Incoming headers are untrusted. Only the variables named in the `Baggage` are read: the
//! list is the trust boundary, and every other member is ignored. So name in it only what the
//! sender may choose: at an edge that takes requests from clients, a client can send any
//! member, and extracting a tenant or a user there lets it pick its own. Extract there with a
//! `Baggage` that names fewer variables than the one you inject with (or not at all), and set
//! the others from what the edge authenticates. A member that is malformed
//! (no `=`, a second raw `=` in its value, which opentelemetry would cut), has a bad
//! percent-escape (`%zz`, a lone `%`), a byte that is not visible ASCII (invalid UTF-8
//! included), or a value that `FromStr` rejects is skipped on its own, and the other members are
//! still read. When the `tracing` feature is on, a variable of ours whose member is in the
//! header but was not read is reported once, as a `WARN` event with target
//! `contextvars::propagation`, with the key and never the value: malformed, past the first
//! [`MAX_MEMBERS`], or not parsed by `FromStr`. With [`tower::ContextLayer::extract`] the event
//! is emitted in the layer's `call`, before the request's context exists and outside the spans
//! of the layers inside it: the line carries no variable of the request (not even those the
//! header did carry) and no span of a layer inside `ContextLayer`. When a key comes twice,
//! opentelemetry keeps the last well-formed member, without a report. Members under other keys
//! are not read, so a bad one is skipped without a report. Nothing here panics on any input,
//! and a value is either the one the sender encoded or absent — never a garbled one.
//!
//! A value that arrives may hold any character, line breaks and escape sequences included: it
//! is what the sender encoded. [`tracing::ContextFields`] escapes control characters in text
//! log lines (unless the subscriber turns sanitization off); check a value before other uses
//! that care.
//!
//! A raw `=` in a value is allowed by W3C Baggage, but opentelemetry's parser keeps only the
//! text before it, so such a member (base64 padding from another implementation, say) is
//! skipped rather than read cut. Our own values never contain one: `=` is percent-encoded.
//!
//! The only pre-pass this module makes over the raw header is that check of bytes and escapes
//! (a member that fails it is left out, so opentelemetry never sees it); the
//! members, keys, values and properties are read by `BaggagePropagator`.
//!
//! # Next to OpenTelemetry's propagators
//!
//! A service that already injects with opentelemetry's global propagator (a
//! `TextMapCompositePropagator` with `BaggagePropagator`) writes `baggage` twice, and
//! opentelemetry-http's `HeaderInjector` *replaces* the header. So the one that writes last
//! wins: [`inject_headers`](Baggage::inject_headers) and [`tower::PropagateLayer`] merge
//! (they keep the members already there), but an OpenTelemetry injection *after* them drops
//! every member of ours, silently, whenever the OpenTelemetry `Baggage` is not empty, and sends
//! that `Baggage`'s members instead, any under our keys included: at an edge whose global
//! propagator extracted a client's `baggage` header, the client's `tenant` replaces the edge's,
//! and the next service's `extract` reads it as if the edge had set it. In a
//! `ServiceBuilder`, the first layer runs first: a `PropagateLayer` listed before a layer that
//! injects with the global propagator loses. reqwest's `RequestBuilder::headers` replaces a
//! header given earlier too, so give both injections one `HeaderMap`. Simplest: put
//! [`Baggage::propagator`] in the composite in place of `BaggagePropagator`; one injection
//! then writes both, in any order.
//!
//! What travels on a hop differs: opentelemetry forwards every member it read (foreign keys
//! and properties included), this module writes only its own variables, and a member of ours
//! goes out as its current value, without the properties it arrived with. On the receiving
//! side, opentelemetry's `Baggage` holds our members too (decoded), but it is not kept in step
//! with the variables: a later `set` changes the variable only. Opentelemetry writes a `%` in a
//! value as it is, so a value with `%` that it forwards or that was set through its API is
//! skipped here as a bad escape when no two hex digits follow (`50%`), and decoded when they
//! do (`5%41` arrives as `5A`). It writes properties as it decoded them: [`Baggage::propagator`]
//! leaves out a member whose properties hold a comma or a control character (reported).
//!
//! # Limits
//!
//! The ones opentelemetry enforces, which are the least W3C Baggage asks every platform to
//! carry: a header of more than [`MAX_HEADER_BYTES`] is dropped whole on the way in, and only
//! its first [`MAX_MEMBERS`] members are read (a member of ours past them is reported). On the
//! way out, members are cut at member boundaries so that the header stays within both limits:
//! our own members have the first claim (in the order they were named), then the members
//! already in the header that are not ours; a member that does not fit is left out whole (and
//! reported), never cut mid-value. On the wire, the members already there come first, in
//! their order, then ours, in the order they were named: the same values always make the
//! same header.
//!
//! [`Baggage`]: Baggage
// Without the `tower` feature there is no `tower` module: the links point to the features.
// (rustdoc joins these to the lines above with no blank line, so they follow a definition:
// after a paragraph they would be read as its text.)
#![cfg_attr(
    feature = "tower",
    doc = "[`tower::PropagateLayer`]: crate::tower::PropagateLayer\n\
           [`tower::ContextLayer::extract`]: crate::tower::ContextLayer::extract"
)]
#![cfg_attr(
    not(feature = "tower"),
    doc = "[`tower::PropagateLayer`]: crate#cargo-features\n\
           [`tower::ContextLayer::extract`]: crate#cargo-features"
)]
#![cfg_attr(
    feature = "tracing",
    doc = "[`tracing::ContextFields`]: crate::tracing::ContextFields"
)]
#![cfg_attr(
    not(feature = "tracing"),
    doc = "[`tracing::ContextFields`]: crate#cargo-features"
)]

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::baggage::{Baggage as OtelBaggage, BaggageExt as _};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::BaggagePropagator;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

use crate::context::Context;
use crate::var::{ContextVar, VarKey};

/// The most bytes of a `baggage` header that are read or written: opentelemetry's limit, the
/// least that W3C Baggage asks every platform to carry.
///
/// # Examples
///
/// ```
/// assert_eq!(contextvars::propagation::MAX_HEADER_BYTES, 8192);
/// ```
pub const MAX_HEADER_BYTES: usize = 8192;

/// The most members of a `baggage` header that are read or written: opentelemetry's limit,
/// the least that W3C Baggage asks every platform to carry.
///
/// # Examples
///
/// ```
/// assert_eq!(contextvars::propagation::MAX_MEMBERS, 64);
/// ```
pub const MAX_MEMBERS: usize = 64;

/// The header (and carrier field) name.
const HEADER: &str = "baggage";

/// [`HEADER`] as a header name, made at compile time: looking a header up, removing or
/// inserting it by `&str` checks the name's bytes on every call (~1,100 instructions of an
/// inject and an extract together, BENCHMARKS.md).
const HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

/// What this module escapes in a value before opentelemetry sees it: everything opentelemetry
/// escapes itself (controls, space, `"`, `,`, `;`, `=`), plus `%` — which opentelemetry does
/// not escape but does decode — and `\`, which W3C Baggage does not allow raw. Non-ASCII bytes
/// are always escaped by `utf8_percent_encode`. The result contains nothing opentelemetry
/// would escape or trim, so it goes on the wire as it is and decodes back to the original.
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b',')
    .add(b';')
    .add(b'=')
    .add(b'\\');

// ----- reporting ------------------------------------------------------------------------------

#[cfg(feature = "tracing")]
macro_rules! report {
    ($($arg:tt)*) => {
        ::tracing::warn!(target: "contextvars::propagation", $($arg)*)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! report {
    ($($arg:tt)*) => {{}};
}

// ----- one variable ---------------------------------------------------------------------------

/// How one variable is written and read, with its type erased.
trait Codec: Send + Sync {
    /// Appends the percent-encoded value bound in `context`; `None` if it is not bound (or its
    /// `Display` failed).
    fn encode(&self, context: &Context, out: &mut String) -> Option<()>;
    /// Sets the variable to `text` parsed in `context`, in place (one copy of the context for
    /// all the variables of a header, not one each); `false` if `FromStr` refused it.
    fn decode(&self, text: &str, context: &mut Context) -> bool;
    fn key(&self) -> VarKey;
}

struct VarCodec<T: 'static>(&'static ContextVar<T>);

impl<T> Codec for VarCodec<T>
where
    T: fmt::Display + FromStr + Send + Sync + 'static,
{
    fn encode(&self, context: &Context, out: &mut String) -> Option<()> {
        let value = context.get(self.0)?;
        write!(Encode(out), "{value}").ok()
    }

    fn decode(&self, text: &str, context: &mut Context) -> bool {
        let Ok(value) = T::from_str(text) else {
            return false;
        };
        drop(context.insert(self.0.key(), self.0.binding(Arc::new(value))));
        true
    }

    fn key(&self) -> VarKey {
        self.0.key()
    }
}

/// A `fmt::Write` that percent-encodes what is written, so `Display` output is encoded without
/// an intermediate `String`.
struct Encode<'a>(&'a mut String);

impl fmt::Write for Encode<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend(utf8_percent_encode(s, VALUE));
        Ok(())
    }
}

#[derive(Clone)]
struct Entry {
    key: &'static str,
    codec: Arc<dyn Codec>,
}

// ----- the public type ------------------------------------------------------------------------

/// Which variables travel between processes, and under which baggage keys; see the
/// [module docs](self).
///
/// Cheap to clone (the list is shared), so one `Baggage` can configure every layer and client
/// of a service.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
/// use contextvars::propagation::Baggage;
///
/// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
/// static PRIORITY: ContextVar<u8> = ContextVar::new("priority");
///
/// let baggage = Baggage::new().var(&REQUEST_ID).var_as("prio", &PRIORITY);
/// assert_eq!(baggage.keys(), ["request_id", "prio"]);
/// ```
#[derive(Clone, Default)]
pub struct Baggage {
    entries: Arc<Vec<Entry>>,
    /// Each key with its entry's index, sorted by key: how [`render`] finds a member's place.
    ranks: Arc<Vec<(&'static str, usize)>>,
}

impl fmt::Debug for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|entry| (entry.key, entry.codec.key().name())),
            )
            .finish()
    }
}

impl Baggage {
    /// No variables yet: injects nothing, extracts nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let baggage = contextvars::propagation::Baggage::new();
    /// assert!(baggage.keys().is_empty());
    /// ```
    pub fn new() -> Self {
        Baggage::default()
    }

    /// Adds `var` under the baggage key `var.name()`: written with `Display`, read back with
    /// `FromStr`.
    ///
    /// # Panics
    ///
    /// If the name is not a valid baggage key (see [`var_as`](Baggage::var_as)) or is already
    /// used by this `Baggage`.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// assert_eq!(Baggage::new().var(&TENANT).keys(), ["tenant"]);
    /// ```
    #[track_caller]
    pub fn var<T>(self, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + FromStr + Send + Sync + 'static,
    {
        self.add("Baggage::var", var.name(), var)
    }

    /// Adds `var` under the baggage key `key`: for a variable whose name is not a valid key
    /// (`app::tenant`), or to match a key other services already use.
    ///
    /// # Panics
    ///
    /// If `key` is not a valid W3C baggage key — an HTTP token: non-empty, visible ASCII,
    /// none of `(),/:;<=>?@[\]{}"` — or contains `%` (opentelemetry would percent-decode it on
    /// the way in); or if `key` is already used by this `Baggage`. These are programming
    /// errors, found on the first run.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("app::tenant");
    /// let baggage = Baggage::new().var_as("tenant", &TENANT);
    /// assert_eq!(baggage.keys(), ["tenant"]);
    /// ```
    #[track_caller]
    pub fn var_as<T>(self, key: &'static str, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + FromStr + Send + Sync + 'static,
    {
        self.add("Baggage::var_as", key, var)
    }

    /// `var` and `var_as`; `call` names the one the user called in a panic message.
    #[track_caller]
    fn add<T>(mut self, call: &str, key: &'static str, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + FromStr + Send + Sync + 'static,
    {
        assert!(
            is_valid_key(key),
            "{call}: {key:?} is not a valid baggage key (a non-empty HTTP token without `%`); \
             name the key with `var_as`"
        );
        assert!(
            self.entries.iter().all(|entry| entry.key != key),
            "{call}: the baggage key {key:?} is used twice; give one of the variables another \
             key with `var_as`"
        );
        let ranks = Arc::make_mut(&mut self.ranks);
        let at = ranks.partition_point(|(other, _)| *other < key);
        ranks.insert(at, (key, self.entries.len()));
        Arc::make_mut(&mut self.entries).push(Entry {
            key,
            codec: Arc::new(VarCodec(var)),
        });
        self
    }

    /// The baggage keys, in the order they were added.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    ///
    /// static A: ContextVar<u32> = ContextVar::new("a");
    /// static B: ContextVar<u32> = ContextVar::new("b");
    /// assert_eq!(Baggage::new().var(&B).var(&A).keys(), ["b", "a"]);
    /// ```
    pub fn keys(&self) -> Vec<&'static str> {
        self.entries.iter().map(|entry| entry.key).collect()
    }

    /// Writes the chosen variables bound in the current context into `headers`' `baggage`
    /// header, keeping the members already there that are not ours (S25).
    ///
    /// A member already in the header under one of our keys is stale: it is replaced by the
    /// current value, or removed when the variable is not bound here (this `Baggage` owns its
    /// keys). Other members are kept byte for byte and in their order, ahead of ours (only the
    /// whitespace around a member, empty members and members left out to stay within the
    /// [limits](self#limits) go). Several `baggage` header lines are
    /// merged into one. A variable's default is not sent: only bound values travel. When
    /// nothing is left, the header is removed. For clients that take a `HeaderMap` (reqwest,
    /// hyper); [`tower::PropagateLayer`] does this for a tower client.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// let baggage = Baggage::new().var(&TENANT);
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("baggage", HeaderValue::from_static("tenant=stale,vendor=x%3By"));
    /// TENANT.sync_scope("acme".into(), || baggage.inject_headers(&mut headers));
    /// assert_eq!(headers["baggage"], "vendor=x%3By,tenant=acme");
    /// ```
    ///
    /// With reqwest, whose client is not a tower service, at each call:
    ///
    /// ```
    /// # use contextvars::ContextVar;
    /// # use contextvars::propagation::Baggage;
    /// # static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// # let baggage = Baggage::new().var(&TENANT);
    /// let client = reqwest::Client::new();
    /// let request = TENANT.sync_scope("acme".into(), || {
    ///     let mut headers = http::HeaderMap::new();
    ///     baggage.inject_headers(&mut headers);
    ///     client.get("http://billing.internal/invoice").headers(headers).build()
    /// });
    /// assert_eq!(request.unwrap().headers()["baggage"], "tenant=acme");
    /// ```
    #[cfg_attr(
        feature = "tower",
        doc = "[`tower::PropagateLayer`]: crate::tower::PropagateLayer"
    )]
    #[cfg_attr(
        not(feature = "tower"),
        doc = "[`tower::PropagateLayer`]: crate#cargo-features"
    )]
    pub fn inject_headers(&self, headers: &mut HeaderMap) {
        if self.entries.is_empty() {
            return;
        }
        let members = headers
            .get_all(&HEADER_NAME)
            .into_iter()
            .flat_map(|line| line.as_bytes().split(|&b| b == b','));
        let (kept, ours) = self.merged_header(members);
        headers.remove(&HEADER_NAME);
        if kept.is_empty() {
            return;
        }
        // Every byte comes from a valid header value or from opentelemetry's ASCII output.
        let value = HeaderValue::from_bytes(&kept)
            .or_else(|_| HeaderValue::from_str(&ours))
            .ok();
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            headers.insert(HEADER_NAME, value);
        }
    }

    /// A copy of the current context with every chosen variable found in `headers` set (S25).
    ///
    /// Variables that are not in the headers, or whose member is bad (see the
    /// [module docs](self#bad-input)), keep what the current context has. Several `baggage`
    /// header lines are read as one list. Never panics, whatever the headers hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// static RETRIES: ContextVar<u32> = ContextVar::new("retries");
    /// let baggage = Baggage::new().var(&TENANT).var(&RETRIES);
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("baggage", HeaderValue::from_static("tenant=ac%25me,retries=many,other=1"));
    /// let mut context = baggage.extract_headers(&headers);
    /// context.run(|| {
    ///     assert_eq!(TENANT.get().as_deref().map(String::as_str), Some("ac%me"));
    ///     assert!(RETRIES.get().is_none()); // `many` is not a u32: skipped
    /// });
    /// ```
    #[must_use = "the values are set in the returned context, not the current one: enter it with `Context::run` or `Scoped::new`"]
    pub fn extract_headers(&self, headers: &HeaderMap) -> Context {
        self.extract_headers_onto(Context::current(), headers)
    }

    /// Writes the chosen variables bound in the current context into `injector` as its
    /// `baggage` field, through opentelemetry's carrier trait: message headers, a `HashMap`
    /// (S25). tonic's `MetadataMap` implements neither carrier trait: on a server,
    /// `extract_headers(request.metadata().as_ref())` reads it (it is an `http::HeaderMap`
    /// inside); on a client, wrap the `Channel` with `tower::PropagateLayer`.
    ///
    /// An injector cannot be read, so only our members are written (the field is replaced,
    /// not merged); nothing is written when no chosen variable is bound. Use
    /// [`inject_headers`](Baggage::inject_headers) to keep other members of an HTTP header.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// let baggage = Baggage::new().var(&TENANT);
    ///
    /// let mut carrier: HashMap<String, String> = HashMap::new();
    /// TENANT.sync_scope("café".into(), || baggage.inject(&mut carrier));
    /// assert_eq!(carrier["baggage"], "tenant=caf%C3%A9");
    /// ```
    pub fn inject(&self, injector: &mut dyn Injector) {
        if self.entries.is_empty() {
            return;
        }
        let ours = render(self.encode_ours(&Context::current()), &self.ranks);
        if !ours.is_empty() {
            injector.set(HEADER, ours);
        }
    }

    /// A copy of the current context with every chosen variable found in `extractor`'s
    /// `baggage` field set, through opentelemetry's carrier trait (S25).
    ///
    /// The same rules as [`extract_headers`](Baggage::extract_headers); every value of the
    /// field (`Extractor::get_all`) is read, as one list.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// let baggage = Baggage::new().var(&TENANT);
    ///
    /// let carrier = HashMap::from([("baggage".to_string(), "tenant=caf%C3%A9".to_string())]);
    /// let mut context = baggage.extract(&carrier);
    /// assert_eq!(context.run(|| TENANT.get()).as_deref().map(String::as_str), Some("café"));
    /// ```
    #[must_use = "the values are set in the returned context, not the current one: enter it with `Context::run` or `Scoped::new`"]
    pub fn extract(&self, extractor: &dyn Extractor) -> Context {
        let base = Context::current();
        if self.entries.is_empty() {
            return base;
        }
        match extractor.get_all(HEADER) {
            None => base,
            Some(values) if values.len() == 1 => self.extract_raw(base, values[0].as_bytes()),
            Some(values) => self.extract_raw(base, values.join(",").as_bytes()),
        }
    }

    /// This `Baggage` as an opentelemetry `TextMapPropagator`, to use *in place of*
    /// opentelemetry_sdk's `BaggagePropagator` in the global composite propagator: one
    /// `baggage` header that carries both the OpenTelemetry `Baggage` of the context being
    /// injected and the chosen variables bound in this crate's current context.
    ///
    /// With `BaggagePropagator` and [`PropagateLayer`] (or [`inject_headers`]) side by side, the
    /// one that writes last decides: opentelemetry's `HeaderInjector` *replaces* the header,
    /// so an OpenTelemetry injection after ours drops our members, and reqwest's
    /// `RequestBuilder::headers` replaces a `baggage` header given earlier. This propagator
    /// writes the merged header in one `set`, so any client instrumentation that injects
    /// through the global propagator carries the chosen variables, in any layer order.
    ///
    /// On the way out: the OpenTelemetry members come first, each as `BaggagePropagator`
    /// writes it, in the order of their keys, then ours; an OpenTelemetry member under one of
    /// our keys is left out (ours is the current value, or the variable is not bound here, as
    /// in [`inject_headers`]), and so is one whose properties hold a comma or a control
    /// character (opentelemetry writes properties as it decoded them; reported). Ours have the
    /// first claim on the [limits](self#limits). On the way in it is `BaggagePropagator`:
    /// the OpenTelemetry `Baggage` of the extracted context is what opentelemetry reads; this
    /// crate's variables are read by [`tower::ContextLayer::extract`] or
    /// [`extract_headers`](Baggage::extract_headers), as before.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    /// use opentelemetry::KeyValue;
    /// use opentelemetry::baggage::BaggageExt as _;
    /// use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator as _};
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    /// let baggage = Baggage::new().var(&TENANT);
    ///
    /// // What a service installs with `opentelemetry::global::set_text_map_propagator`.
    /// let propagator = TextMapCompositePropagator::new(vec![
    ///     Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
    ///     Box::new(baggage.propagator()),
    /// ]);
    /// let otel = opentelemetry::Context::new().with_baggage([KeyValue::new("plan", "gold")]);
    /// let mut carrier = std::collections::HashMap::new();
    /// TENANT.sync_scope("acme".into(), || propagator.inject_context(&otel, &mut carrier));
    /// assert_eq!(carrier["baggage"], "plan=gold,tenant=acme");
    /// ```
    #[cfg_attr(
        feature = "tower",
        doc = "[`tower::ContextLayer::extract`]: crate::tower::ContextLayer::extract\n\
               [`PropagateLayer`]: crate::tower::PropagateLayer"
    )]
    #[cfg_attr(
        not(feature = "tower"),
        doc = "[`tower::ContextLayer::extract`]: crate#cargo-features\n\
               [`PropagateLayer`]: crate#cargo-features"
    )]
    /// [`inject_headers`]: Baggage::inject_headers
    pub fn propagator(&self) -> BaggageTextMapPropagator {
        BaggageTextMapPropagator {
            baggage: self.clone(),
            fields: [HEADER.to_owned()],
        }
    }

    // ----- crate-internal ---------------------------------------------------------------------

    /// [`extract_headers`](Baggage::extract_headers) on top of `base`: what
    /// `tower::ContextLayer::extract` does with each request's fork.
    pub(crate) fn extract_headers_onto(&self, base: Context, headers: &HeaderMap) -> Context {
        if self.entries.is_empty() {
            return base;
        }
        let mut lines = headers.get_all(&HEADER_NAME).iter();
        let Some(first) = lines.next() else {
            return base;
        };
        match lines.next() {
            None => self.extract_raw(base, first.as_bytes()),
            Some(second) => {
                let mut joined = first.as_bytes().to_vec();
                for line in std::iter::once(second).chain(lines) {
                    joined.push(b',');
                    joined.extend_from_slice(line.as_bytes());
                }
                self.extract_raw(base, &joined)
            }
        }
    }

    fn extract_raw(&self, base: Context, raw: &[u8]) -> Context {
        if raw.len() > MAX_HEADER_BYTES {
            report!(
                bytes = raw.len(),
                "baggage: incoming header over {MAX_HEADER_BYTES} bytes dropped"
            );
            return base;
        }
        let header = without_bad_members(raw);
        let found = if header.is_empty() {
            opentelemetry::Context::new() // nothing to read: opentelemetry would warn of ""
        } else {
            BaggagePropagator::new()
                .extract_with_context(&opentelemetry::Context::new(), &OneField(&header))
        };
        let found = found.baggage();
        let mut context = base;
        for entry in self.entries.iter() {
            let Some(text) = found.get(entry.key) else {
                report_missing(raw, entry.key);
                continue;
            };
            if !entry.codec.decode(text.as_str(), &mut context) {
                report!(
                    key = entry.key,
                    "baggage: member skipped: its value does not parse as the variable's type"
                );
            }
        }
        context
    }

    /// Our members bound in `context`, encoded and cut to the limits: `(key, encoded value)`.
    fn encode_ours(&self, context: &Context) -> Vec<(&'static str, String)> {
        let mut ours = Vec::with_capacity(self.entries.len());
        let mut budget = Budget::default();
        for entry in self.entries.iter() {
            let mut value = String::new();
            if entry.codec.encode(context, &mut value).is_none() {
                continue;
            }
            if budget.take(entry.key.len() + 1 + value.len()) {
                ours.push((entry.key, value));
            } else {
                report!(
                    key = entry.key,
                    bytes = value.len(),
                    "baggage: member left out: the header would exceed the limits"
                );
            }
        }
        ours
    }

    /// The `baggage` header to send: `members` (someone else's, encoded) without those under
    /// our keys, within the limits our members leave (S25), then our members as bound in the
    /// current context. Also returns our members alone, rendered.
    fn merged_header<'a>(&self, members: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, String) {
        let ours = self.encode_ours(&Context::current());
        let mut budget = Budget::after(&ours);
        let mut kept: Vec<u8> = Vec::new();
        let mut dropped = 0usize;
        for member in members {
            let member = member.trim_ascii();
            if member.is_empty() || self.is_ours(member) {
                continue;
            }
            if !budget.take(member.len()) {
                dropped += 1;
                continue;
            }
            if !kept.is_empty() {
                kept.push(b',');
            }
            kept.extend_from_slice(member);
        }
        if dropped > 0 {
            report!(
                dropped,
                "baggage: members of the outgoing header left out to stay within the limits"
            );
        }
        let ours = render(ours, &self.ranks);
        if !ours.is_empty() {
            if !kept.is_empty() {
                kept.push(b',');
            }
            kept.extend_from_slice(ours.as_bytes());
        }
        (kept, ours)
    }

    /// Whether a raw member of an outgoing header is under one of our keys (see
    /// [`member_key`]). Read from the raw bytes rather than by asking opentelemetry to parse
    /// the member, which drops a member whose value does not decode (`tenant=%FF`): such a
    /// member of ours is stale all the same, and must not travel next to the fresh one.
    fn is_ours(&self, member: &[u8]) -> bool {
        member_key(member).is_some_and(|key| self.entries.iter().any(|e| e.key == key))
    }
}

/// [`Baggage::propagator`]: opentelemetry's `BaggagePropagator` with this crate's chosen
/// variables merged into the header it writes.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
/// use contextvars::propagation::Baggage;
/// use opentelemetry::propagation::TextMapPropagator as _;
///
/// static TENANT: ContextVar<String> = ContextVar::new("tenant");
/// let propagator = Baggage::new().var(&TENANT).propagator();
/// assert_eq!(propagator.fields().collect::<Vec<_>>(), ["baggage"]);
///
/// TENANT.set("acme".to_string());
/// let mut carrier = std::collections::HashMap::new();
/// propagator.inject_context(&opentelemetry::Context::new(), &mut carrier);
/// assert_eq!(carrier["baggage"], "tenant=acme");
/// ```
#[derive(Clone, Debug)]
pub struct BaggageTextMapPropagator {
    baggage: Baggage,
    fields: [String; 1],
}

impl TextMapPropagator for BaggageTextMapPropagator {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn Injector) {
        // Each opentelemetry member is written on its own, so that its bounds are known:
        // opentelemetry writes properties as they are, and one it decoded from an incoming
        // `%2C` or `%0A` holds a raw `,` (read as two members downstream) or a control
        // character (a header value no HTTP client sends, so the whole header, ours included,
        // would be lost). Such a member is left out. Sorted by key: opentelemetry's `Baggage`
        // iterates in an order that changes from call to call.
        let mut theirs: Vec<(&str, String)> = Vec::new();
        let mut unfit = 0usize;
        // Members under our keys are dropped by `merged_header` (ours: the current value goes
        // out, or none).
        for (key, entry) in cx.baggage().iter() {
            let one: OtelBaggage = std::iter::once((key.clone(), entry.clone())).collect();
            let mut field = OneField(Cow::Borrowed(""));
            BaggagePropagator::new()
                .inject_context(&opentelemetry::Context::new().with_baggage(one), &mut field);
            let member = field.0.into_owned();
            if member
                .bytes()
                .all(|b| b != b',' && (b == b'\t' || (b >= b' ' && b != 0x7F)))
            {
                theirs.push((key.as_str(), member));
            } else {
                unfit += 1;
            }
        }
        if unfit > 0 {
            report!(
                unfit,
                "baggage: opentelemetry members left out of the outgoing header: a comma or a \
                 control character in their properties"
            );
        }
        theirs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let (header, _) = self
            .baggage
            .merged_header(theirs.iter().map(|(_, member)| member.as_bytes()));
        // UTF-8 pieces (opentelemetry's and ours) joined at ASCII commas: never an `Err`.
        match String::from_utf8(header) {
            Ok(header) if !header.is_empty() => injector.set(HEADER, header),
            _ => {}
        }
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn Extractor,
    ) -> opentelemetry::Context {
        BaggagePropagator::new().extract_with_context(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

/// A raw member's key as opentelemetry reads keys: the text before the first `=` (or before
/// the first `;` when there is no `=` before it), percent-decoded, then trimmed of whitespace,
/// Unicode's included. `None` if that is not UTF-8, which no key of ours is.
fn member_key(member: &[u8]) -> Option<Cow<'_, str>> {
    let end = member
        .iter()
        .position(|&b| b == b'=' || b == b';')
        .unwrap_or(member.len());
    match percent_decode(&member[..end]).into() {
        Cow::Borrowed(key) => std::str::from_utf8(key)
            .ok()
            .map(|k| Cow::Borrowed(k.trim())),
        Cow::Owned(key) => String::from_utf8(key)
            .ok()
            .map(|k| Cow::Owned(k.trim().to_owned())),
    }
}

/// Reports why `key`'s member, if the incoming header has one, was not read: opentelemetry
/// dropped it (it is malformed), or it is past the first [`MAX_MEMBERS`]. Called only for a
/// variable that was not found, so a header that carries all of ours costs nothing here, and
/// one that lacks some costs a pass over the header only when the report would be seen.
#[cfg(feature = "tracing")]
fn report_missing(raw: &[u8], key: &'static str) {
    if !tracing::enabled!(target: "contextvars::propagation", tracing::Level::WARN) {
        return;
    }
    let under_key = |member: &&[u8]| member_key(member).is_some_and(|k| k == key);
    let mut members = raw.split(|&b| b == b',');
    if members.by_ref().take(MAX_MEMBERS).any(|m| under_key(&m)) {
        report!(
            key,
            "baggage: member skipped: malformed (no `=`, a raw `=` in its value, a bad \
             percent-escape or one that is not UTF-8, or a byte that is not visible ASCII)"
        );
    } else if members.any(|m| under_key(&m)) {
        report!(
            key,
            "baggage: member skipped: past the first {MAX_MEMBERS} members"
        );
    }
}

#[cfg(not(feature = "tracing"))]
fn report_missing(_: &[u8], _: &'static str) {}

/// A W3C baggage key this module accepts: an HTTP token without `%`.
fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(),/:;<=>?@[\\]{}\"%".contains(&b))
}

/// Counts bytes and members against the header limits.
#[derive(Default)]
struct Budget {
    bytes: usize,
    members: usize,
}

impl Budget {
    fn after(ours: &[(&'static str, String)]) -> Budget {
        let mut budget = Budget::default();
        for (key, value) in ours {
            budget.take(key.len() + 1 + value.len());
        }
        budget
    }

    /// Counts a member of `len` bytes (plus its `,`) if it fits.
    fn take(&mut self, len: usize) -> bool {
        let bytes = self.bytes + len + usize::from(self.members > 0);
        if self.members >= MAX_MEMBERS || bytes > MAX_HEADER_BYTES {
            return false;
        }
        self.bytes = bytes;
        self.members += 1;
        true
    }
}

fn otel_baggage(ours: Vec<(&'static str, String)>) -> OtelBaggage {
    let mut baggage = OtelBaggage::new();
    for (key, value) in ours {
        // Within opentelemetry's own limits: `Budget` counts more (the `=` and `,`).
        baggage.insert(key, value);
    }
    baggage
}

/// Our members as opentelemetry writes them, in the order they were named (empty if none).
/// `ranks` is [`Baggage::ranks`].
fn render(ours: Vec<(&'static str, String)>, ranks: &[(&'static str, usize)]) -> String {
    if ours.is_empty() {
        return String::new();
    }
    let single = ours.len() == 1;
    let context = opentelemetry::Context::new().with_baggage(otel_baggage(ours));
    let mut field = OneField(Cow::Borrowed(""));
    BaggagePropagator::new().inject_context(&context, &mut field);
    let written = field.0.into_owned();
    if single {
        return written;
    }
    // opentelemetry writes from a `HashMap`, in an order that changes from call to call. Put
    // the members back in ours, so that the same values always make the same header. It
    // writes our keys (HTTP tokens) as they are, and our values hold no raw `,` or `=`. Each
    // member goes into the slot of its entry (`position` rather than `str::split`, whose
    // `memchr` call per member costs more than these short members take to scan).
    let mut slots: Vec<Option<&str>> = vec![None; ranks.len()];
    let mut rest = written.as_str();
    while !rest.is_empty() {
        let (member, next) =
            rest.split_at(rest.bytes().position(|b| b == b',').unwrap_or(rest.len()));
        let key = &member.as_bytes()[..member
            .bytes()
            .position(|b| b == b'=')
            .unwrap_or(member.len())];
        if let Ok(at) = ranks.binary_search_by(|(ours, _)| ours.as_bytes().cmp(key)) {
            slots[ranks[at].1] = Some(member);
        }
        rest = next.get(1..).unwrap_or_default();
    }
    let mut header = String::with_capacity(written.len());
    for member in slots.into_iter().flatten() {
        if !header.is_empty() {
            header.push(',');
        }
        header.push_str(member);
    }
    header
}

/// A carrier with one field, `baggage`.
struct OneField<S>(S);

impl<S: AsRef<str>> Extractor for OneField<S> {
    fn get(&self, key: &str) -> Option<&str> {
        key.eq_ignore_ascii_case(HEADER).then(|| self.0.as_ref())
    }

    fn keys(&self) -> Vec<&str> {
        vec![HEADER]
    }
}

impl Injector for OneField<Cow<'_, str>> {
    fn set(&mut self, key: &str, value: String) {
        if key.eq_ignore_ascii_case(HEADER) {
            self.0 = Cow::Owned(value);
        }
    }
}

/// The raw header as text for opentelemetry, without the members that it would misread (and,
/// when there are such members, cut to the first [`MAX_MEMBERS`], which opentelemetry reads).
///
/// A member is misread when it has a byte that is not visible ASCII, space or tab (invalid
/// UTF-8 included: opentelemetry only takes `&str`), a `%` in its key or value not followed by
/// two hex digits (opentelemetry leaves those undecoded, so `%zz` would arrive as a garbled
/// value), or a second `=` before its properties (opentelemetry keeps only the text up to it).
/// Also left out: the members opentelemetry skips with a warning (no `=`, an empty one, an
/// escape that does not decode to UTF-8), since the warning quotes the whole header.
fn without_bad_members(raw: &[u8]) -> Cow<'_, str> {
    let bad = raw.split(|&b| b == b',').filter(|m| !is_clean(m)).count();
    if bad == 0 {
        // Clean members are ASCII, so this never fails.
        return std::str::from_utf8(raw).map_or(Cow::Borrowed(""), Cow::Borrowed);
    }
    // The bad members are left out rather than blanked: opentelemetry_sdk (with its default
    // `internal-logs` feature) warns about every empty member, quoting the whole header with
    // every other member's value. Only the first `MAX_MEMBERS` members are passed, so the
    // ones opentelemetry reads are the same.
    let mut out = String::with_capacity(raw.len());
    for member in raw.split(|&b| b == b',').take(MAX_MEMBERS) {
        if is_clean(member) {
            if !out.is_empty() {
                out.push(',');
            }
            out.extend(member.iter().map(|&b| char::from(b)));
        }
    }
    Cow::Owned(out)
}

fn is_clean(member: &[u8]) -> bool {
    let mut equals = 0;
    let mut in_properties = false;
    let mut high_escape = false;
    let mut i = 0;
    while i < member.len() {
        match member[i] {
            // Properties are not ours to read: opentelemetry drops an undecodable one.
            b'%' if !in_properties => {
                let hex = |j: usize| member.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                high_escape |= member[i + 1] >= b'8';
                i += 2;
            }
            b';' => in_properties = true,
            b'=' if !in_properties => {
                equals += 1;
                if equals > 1 {
                    return false;
                }
            }
            b' ' | b'\t' => {}
            b if b.is_ascii_graphic() => {}
            _ => return false,
        }
        i += 1;
    }
    // No `=` (an empty member included): opentelemetry skips it with a warning. An escape of
    // a byte past ASCII: the key and value must decode to UTF-8, or it warns too.
    equals == 1 && (!high_escape || decodes_to_utf8(member))
}

/// Whether the key and value of a member (before its properties) percent-decode to UTF-8.
fn decodes_to_utf8(member: &[u8]) -> bool {
    let key_value = member.split(|&b| b == b';').next().unwrap_or_default();
    key_value
        .split(|&b| b == b'=')
        .all(|part| percent_decode(part).decode_utf8().is_ok())
}
