//! Herald's templates against Python's Jinja2 `SandboxedEnvironment` (NetBox's engine): every
//! template in the corpus must render to the same text for the same context.

use herald::events::{Event, EventKind};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

fn context() -> Value {
    let event = Event {
        id: 1,
        kind: EventKind::Created,
        timestamp: "2020-02-25T15:10:26.010582+00:00".into(),
        object_type: "dcim.device".into(),
        username: "jstretch".into(),
        request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a".into(),
        data: json!({
            "id": 7, "url": "/api/dcim/devices/7/", "display": "edge-r1 (Zürich)", "name": "edge-r1",
            "serial": "JN1234ABC", "enabled": true, "mtu": 9000, "u_height": 1.0,
            "mac_address": "00:11:22:AA:BB:CC",
            "status": {"value": "active", "label": "Active"},
            "site": {"id": 19, "url": "/api/dcim/sites/19/", "display": "Site 1", "name": "Site 1", "slug": "site-1"},
            "region": null, "tenant": null, "vlans": [],
            "vlan_ids": [300, 100, 200],
            "description": "Edge <router> & \"friends\" in Zürich",
            "comments": "  Core edge router for the Zurich campus.\nReplaced in 2024.  ",
            "tags": [
                {"id": 2, "name": "urgent", "slug": "urgent", "color": "ff0000"},
                {"id": 1, "name": "core", "slug": "core", "color": "9e9e9e"}
            ],
            "custom_fields": {"owner": null, "rack_units": 2},
            "created": "2020-02-25T15:10:26.010582+00:00"
        }),
        snapshots: json!({"prechange": null, "postchange": {"name": "edge-r1", "status": "active", "tags": ["core", "urgent"]}}),
        request: None,
        body: None,
        batch: None,
    };
    event.context()
}

fn python_render(ctx: &Value, templates: &[String]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jinja/render.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let job = json!({"context": ctx, "templates": templates});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference renderer failed (is Jinja2 installed? `pip install -r tests/requirements.txt`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference output is JSON")
}

fn herald_render(ctx: &Value, source: &str) -> Result<String, String> {
    let mut env = herald::webhooks::template::environment();
    herald::webhooks::template::add(&mut env, "t", source).map_err(|e| e.to_string())?;
    herald::webhooks::template::render(&env, "t", &minijinja::Value::from_serialize(ctx)).map_err(|e| e.message)
}

#[test]
fn corpus_renders_as_python_jinja2_does() {
    let corpus: Vec<String> =
        serde_json::from_str(include_str!("../jinja/corpus.json")).expect("corpus is a JSON list of strings");
    assert!(corpus.len() >= 40, "the corpus has {} templates", corpus.len());
    let ctx = context();
    let expected = python_render(&ctx, &corpus);
    assert_eq!(expected.len(), corpus.len());
    let mut mismatches = Vec::new();
    for (source, want) in corpus.iter().zip(&expected) {
        let want = match want.get("ok").and_then(Value::as_str) {
            Some(s) => s,
            None => panic!("the corpus must hold templates Jinja2 renders; {source:?} gave {want}"),
        };
        match herald_render(&ctx, source) {
            Ok(got) if got == want => {}
            Ok(got) => mismatches.push(format!("template {source:?}\n  jinja2: {want:?}\n  herald: {got:?}")),
            Err(e) => mismatches.push(format!("template {source:?}\n  jinja2: {want:?}\n  herald error: {e}")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        corpus.len(),
        mismatches.join("\n")
    );
}
