//! Property tests over what hostile input reaches first: header lines, condition sets, posted
//! events, request bodies, and templates compiled and rendered in the sandbox (constant
//! expressions of every operator and literal kind, which minijinja folds when it compiles). Each
//! runs a bounded number of generated cases (`PROPTEST_CASES` sets the parsers',
//! `HERALD_SANDBOX_CASES` the sandbox's) and checks that nothing panics, hangs or breaks its
//! promise.

use herald::api::json::{self, BodyError, Bounds};
use herald::catalog::Catalog;
use herald::events::{ingest, Event, EventKind};
use herald::webhooks::conditions::Conditions;
use herald::webhooks::headers;
use herald::webhooks::sandbox::{Limits, Sandbox};
use herald::webhooks::Webhook;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Cases per property: `default`, or the number in the environment variable `var`.
fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Any JSON value, a few levels deep, with the keys conditions and events look for.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("created"),
            Just("object_updated"),
            Just("dcim.site"),
            Just("site"),
            Just("2020-02-25T15:10:26+00:00"),
            Just("eq"),
            Just("regex"),
            Just("(a+)+$"),
            Just("status.value"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop_oneof![
        Just("and".to_string()),
        Just("or".to_string()),
        Just("attr".to_string()),
        Just("value".to_string()),
        Just("op".to_string()),
        Just("negate".to_string()),
        Just("event".to_string()),
        Just("object_type".to_string()),
        Just("model".to_string()),
        Just("data".to_string()),
        Just("snapshots".to_string()),
        Just("prechange".to_string()),
        Just("timestamp".to_string()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases("PROPTEST_CASES", 512), ..ProptestConfig::default() })]

    #[test]
    fn header_lines_never_carry_line_breaks(text in "(?s).{0,200}") {
        for (name, value) in headers::parse(&text) {
            prop_assert!(!name.is_empty());
            prop_assert!(!name.chars().any(char::is_control), "{name:?}");
            prop_assert!(!value.chars().any(char::is_control), "{value:?}");
            if headers::check_name(&name).is_ok() {
                prop_assert!(reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok());
                prop_assert!(!headers::FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(&name)));
            }
        }
        let _ = headers::check_source(&text);
    }

    #[test]
    fn condition_sets_parse_or_say_why_and_never_panic(cond in json_value(), data in json_value(), pre in json_value()) {
        if let Ok(parsed) = Conditions::parse(&cond) {
            let snapshots = json!({"prechange": pre, "postchange": data.clone()});
            let _ = parsed.eval(&data, &snapshots);
        }
    }

    #[test]
    fn posted_events_parse_or_name_their_fields(body in json_value()) {
        let catalog = Catalog::builtin();
        let defaults = ingest::Defaults {
            username: "p",
            now: chrono::Utc::now(),
            request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a",
        };
        let text = body.to_string();
        let items = match &body {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        match ingest::parse(body, text.as_bytes(), &catalog, &defaults) {
            Ok(events) => {
                prop_assert!(!events.is_empty());
                // An event kept as posted keeps exactly its own item.
                for (e, item) in events.iter().zip(&items) {
                    if let Some(kept) = &e.body {
                        prop_assert_eq!(&serde_json::from_str::<Value>(kept).unwrap(), item);
                    }
                }
            }
            Err(e) => prop_assert!(e.is_object() || e.is_array(), "{e}"),
        }
    }

    #[test]
    fn bounded_bodies_parse_as_serde_json_or_are_refused(value in json_value(), noise in prop::collection::vec(any::<u8>(), 0..64)) {
        let bounds = Bounds { values: 40, items: 4 };
        let text = value.to_string();
        match json::parse(text.as_bytes(), bounds) {
            Ok(parsed) => prop_assert_eq!(parsed, serde_json::from_str::<Value>(&text).unwrap()),
            Err(BodyError::TooManyItems(_)) => prop_assert!(value.as_array().is_some_and(|a| a.len() > 4)),
            Err(BodyError::TooManyValues(_)) => {}
            Err(e) => prop_assert!(false, "valid JSON refused: {e}"),
        }
        // Bytes that are not JSON never panic.
        let _ = json::parse(&noise, bounds);
    }
}

/// Pieces templates are built from: ordinary ones, and ones that build large values or loop.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{ data.name }}".to_string()),
        Just("{{ event }} {{ model }}".to_string()),
        Just("{% for i in range(50) %}{{ i }}{% endfor %}".to_string()),
        Just("{{ data|tojson }}".to_string()),
        (1u64..2_000_000_000).prop_map(|n| format!("{{{{ 'ab' * {n} }}}}")),
        (1u64..2_000_000_000).prop_map(|n| format!("{{{{ 'x'|center({n}) }}}}")),
        (1u64..2_000_000_000).prop_map(|n| format!("{{{{ ([1] * {n})|join(',') }}}}")),
        (10u32..45).prop_map(|n| format!(
            "{{% set ns = namespace(s='abcd') %}}{{% for i in range({n}) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s|length }}}}"
        )),
        (1u64..100_000).prop_map(|n| format!("{{% for i in range({n}) %}}{{% for j in range({n}) %}}.{{% endfor %}}{{% endfor %}}")),
        Just("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}".to_string()),
        (1u64..1_000_000_000).prop_map(|n| format!("{{{{ range({n})|list|length }}}}")),
        Just("{{ (data|tojson * 100000)|replace('1', '1111111111') }}".to_string()),
    ];
    prop::collection::vec(piece, 1..4).prop_map(|parts| parts.concat())
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// A runtime, a sandbox of two 64 MiB children with a 2 s bound, and an event to render.
fn sandbox_and_event() -> (tokio::runtime::Runtime, Sandbox, Event) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = Sandbox::new(Limits {
        program: env!("CARGO_BIN_EXE_herald").into(),
        processes: 2,
        memory_bytes: 64 * 1024 * 1024,
        timeout: Duration::from_secs(2),
    });
    let event = Event {
        id: 1,
        kind: EventKind::Created,
        timestamp: "2020-02-25T15:10:26.010582+00:00".into(),
        object_type: "dcim.site".into(),
        username: "p".into(),
        request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a".into(),
        data: json!({"id": 1, "name": "Site 1"}),
        snapshots: json!({"prechange": null, "postchange": null}),
        request: None,
        body: None,
        batch: None,
    };
    (runtime, sandbox, event)
}

#[test]
fn templates_in_the_sandbox_end_within_their_bounds() {
    let (runtime, sandbox, event) = sandbox_and_event();
    let before = peak_rss_mib();
    let config = ProptestConfig {
        cases: cases("HERALD_SANDBOX_CASES", 40),
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in template())| {
        let mut w = Webhook::blank();
        w.payload_url = "http://127.0.0.1:9/".into();
        w.body_template = body.clone();
        let started = Instant::now();
        let built = runtime.block_on(sandbox.build(&w, &event, None));
        prop_assert!(started.elapsed() < Duration::from_secs(10), "{body} took {:?}", started.elapsed());
        if let Err(e) = built {
            prop_assert!(!e.message.is_empty());
        }
    });
    // Whatever the children built, this process did not hold it.
    assert!(
        peak_rss_mib() < before + 64,
        "peak RSS grew from {before} to {} MiB",
        peak_rss_mib()
    );
}

/// Constant expressions of every operator and literal kind, which minijinja folds when it
/// compiles: some small, some that would build huge values.
fn constant_expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        (0u32..20).prop_map(|n| format!("10**{n}")),
        (-1e6f64..1e6).prop_map(|f| format!("{f:?}")),
        "[a-z]{0,6}".prop_map(|s| format!("'{s}'")),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("none".to_string()),
        Just("[1, 'a', 2.5]".to_string()),
        Just("{'k': 'v', 'n': 1}".to_string()),
        Just("(1, 2)".to_string()),
        (1u32..9).prop_map(|n| format!("('y' * 10**{n})")),
        (1u32..16).prop_map(|n| format!("([1, 2] * 10**{n})")),
    ];
    let op = prop::sample::select(vec![
        "+", "-", "*", "/", "//", "**", "~", "and", "or", "==", "!=", "<", ">=", "in", "not in",
    ]);
    leaf.prop_recursive(4, 32, 3, move |inner| {
        prop_oneof![
            (inner.clone(), op.clone(), inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("(-{a})")),
            inner.clone().prop_map(|a| format!("(not {a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{{'a': {a}, 'b': {b}}}")),
            (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| format!("({a} if {c} else {b})")),
        ]
    })
}

/// Where a constant expression may stand in a template, rendered or not.
fn compiled_template() -> impl Strategy<Value = String> {
    (constant_expression(), 0..6u8).prop_map(|(e, place)| match place {
        0 => format!("{{{{ {e} }}}}"),
        1 => format!("{{% if false %}}{{{{ {e} }}}}{{% endif %}}ok"),
        2 => format!("{{% set x = {e} %}}{{{{ x|length }}}}"),
        3 => format!("{{% macro m() %}}{{{{ {e} }}}}{{% endmacro %}}{{{{ m()|length }}}}"),
        4 => format!("{{{{ ({e})|string|truncate(20) }}}}"),
        _ => format!("{{% for i in [{e}] %}}{{{{ loop.index }}}}{{% endfor %}}"),
    })
}

#[test]
fn templates_compiled_in_the_sandbox_end_within_their_bounds() {
    let (runtime, sandbox, event) = sandbox_and_event();
    let before = peak_rss_mib();
    let config = ProptestConfig {
        cases: cases("HERALD_SANDBOX_CASES", 40),
        ..ProptestConfig::default()
    };
    proptest!(config, |(template in compiled_template(), field in 0..3u8)| {
        let mut w = Webhook::blank();
        w.payload_url = "http://127.0.0.1:9/".into();
        match field {
            0 => w.body_template = template.clone(),
            1 => w.additional_headers = format!("X-Value: {template}"),
            _ => w.payload_url = format!("http://127.0.0.1:9/{template}"),
        }
        let started = Instant::now();
        let built = runtime.block_on(sandbox.build(&w, &event, None));
        prop_assert!(started.elapsed() < Duration::from_secs(10), "{template} took {:?}", started.elapsed());
        match built {
            Ok(out) => prop_assert!(out.body.len() <= 4 * 1024 * 1024),
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                prop_assert!(["payload_url", "additional_headers", "body_template"].contains(&e.field), "{}", e.field);
            }
        }
    });
    // Whatever the children folded, this process did not hold it.
    assert!(
        peak_rss_mib() < before + 64,
        "peak RSS grew from {before} to {} MiB",
        peak_rss_mib()
    );
}
