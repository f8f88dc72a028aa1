//! Templates that build huge values when compiled or rendered.

use super::{assert_refused, Herald};
use crate::common::{site_event, wait_for, TestReceiver};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn templates_cannot_exhaust_memory_or_time() {
    let h = Herald::start(&[]).await;
    let bombs = [
        "{% for i in range(100) %}{% set x = 'x' * 90000000 %}{% endfor %}",
        "{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{{ ([1] * 1000000000)|join(',') }}",
        "{{ data|tojson(indent=1000000000) }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ '%1000000000s'|format('x') }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    ];
    for bomb in bombs {
        // Refused when saved: it would go past the bounds on any event.
        let (s, b) = h.webhook(json!({"body_template": bomb})).await;
        assert_refused(s, &b, 400, "body_template");
        // And when previewed, with the same message.
        let (s, b) = h
            .call(
                "POST",
                "/api/extras/webhooks/preview/",
                Some(json!({"webhook": {
                "name": "p", "content_types": ["dcim.site"], "type_create": true,
                "payload_url": "http://127.0.0.1:9/", "body_template": bomb}})),
            )
            .await;
        assert_refused(s, &b, 400, "body_template");
        h.assert_well().await;
    }
    // One that passes on the sample and blows up on real data fails its delivery, not Herald.
    let sneaky = "{% if data.name == 'boom' %}{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}\
                  {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}{% else %}ok{% endif %}";
    let (s, w) = h.webhook(json!({"body_template": sneaky})).await;
    assert_eq!(s, 201, "{w}");
    let (s, _) = h
        .call("POST", "/api/extras/events/", Some(site_event("created", 7, "boom")))
        .await;
    assert_eq!(s, 202);
    let d = h.delivery_of(w["id"].as_i64().unwrap()).await;
    assert_eq!(d["status"]["value"], "failed");
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("more memory than the sandbox allows"),
        "{d}"
    );
    // Two heavy previews at once do not stall the API.
    let heavy = json!({"webhook": {"name": "h", "content_types": ["dcim.site"], "type_create": true,
        "payload_url": "http://127.0.0.1:9/", "body_template": "{% for i in range(2000) %}{{ i }}{% endfor %}"}});
    let previews = futures_join(&h, heavy).await;
    assert!(previews.iter().all(|s| *s == 200), "{previews:?}");
    h.assert_well().await;
}

/// Two previews at once while the status is asked for.
async fn futures_join(h: &Herald, body: Value) -> Vec<u16> {
    let (a, b, status) = tokio::join!(
        h.call("POST", "/api/extras/webhooks/preview/", Some(body.clone())),
        h.call("POST", "/api/extras/webhooks/preview/", Some(body.clone())),
        h.call("GET", "/api/status/", None),
    );
    vec![a.0, b.0, status.0]
}

/// A balanced tree of `~` over `leaf`, `depth` levels deep.
fn concat_tree(leaf: &str, depth: u32) -> String {
    if depth == 0 {
        return leaf.to_string();
    }
    let half = concat_tree(leaf, depth - 1);
    format!("({half} ~ {half})")
}

/// Templates whose constant expressions fold into huge values when they are compiled (not
/// only when rendered): each is refused where it is saved, previewed or test-sent, naming its
/// field, and no Herald process grows for it.
fn folding_templates() -> Vec<(&'static str, String)> {
    vec![
        // The 257-byte template that took 1.6 GB: `~` over 100 MB strings, depth 4.
        ("body_template", format!("{{{{ {} }}}}", concat_tree("('y'*10**8)", 4))),
        ("body_template", format!("{{{{ {} }}}}", concat_tree("('y'*10**7)", 2))),
        // Never rendered, folded all the same.
        ("body_template", "{% if false %}{{ 'yy'*10**7 }}{% endif %}ok".into()),
        // `*` and `+` on strings and lists, constants inside lists and mappings.
        ("body_template", "{{ ('ab' * 10**6) + ('cd' * 10**6) }}".into()),
        ("body_template", "{{ ([1, 2, 3] * 10**7) + ([4] * 10**7) }}".into()),
        ("body_template", "{{ [('y' * 10**6), ('z' * 10**6)] }}".into()),
        ("body_template", "{{ {'a': 'y' * 2000000} }}".into()),
        // A filter over a folded constant: the constant is folded first.
        ("body_template", "{{ ('y' * 3000000)|upper|length }}".into()),
        // Inside macros, nested.
        (
            "body_template",
            "{% macro a() %}{% macro b() %}{{ 'q' * 10**7 }}{% endmacro %}{{ b() }}{% endmacro %}{{ a() }}".into(),
        ),
        // In the URL and the headers too.
        ("payload_url", "http://127.0.0.1:9/{{ 'u' * 10**7 }}".into()),
        ("additional_headers", "X-Big: {{ 'h' * 10**7 }}".into()),
    ]
}

#[tokio::test]
async fn templates_cannot_fold_constants_past_the_bounds() {
    let h = Herald::start(&[]).await;
    let base = json!({"name": "p", "content_types": ["dcim.site"], "type_create": true,
                      "payload_url": "http://127.0.0.1:9/"});
    for (field, template) in folding_templates() {
        let mut body = base.clone();
        body[field] = json!(template);
        // Saved: refused, naming the field.
        let (s, b) = h.webhook(json!({ field: template })).await;
        assert_refused(s, &b, 400, field);
        // Previewed: the same.
        let (s, b) = h
            .call(
                "POST",
                "/api/extras/webhooks/preview/",
                Some(json!({ "webhook": body })),
            )
            .await;
        assert_refused(s, &b, 400, field);
        // Changed into an existing webhook: refused, and the webhook stays as it was.
        let (s, w) = h.webhook(json!({})).await;
        assert_eq!(s, 201, "{w}");
        let path = format!("/api/extras/webhooks/{}/", w["id"]);
        let (s, b) = h.call("PATCH", &path, Some(json!({ field: template }))).await;
        assert_refused(s, &b, 400, field);
        let (_, kept) = h.call("GET", &path, None).await;
        assert_eq!(kept[field], w[field]);
        h.assert_well().await;
    }
}

/// The webhooks' template field, as stored, set straight in the database (as an older Herald
/// may have saved it).
fn store_template(dir: &std::path::Path, id: i64, field: &str, template: &str) {
    let db = rusqlite::Connection::open(dir.join("herald.db")).unwrap();
    let changed = db
        .execute(
            &format!("update webhooks set {field} = ?1, updated_at = updated_at + 1 where id = ?2"),
            rusqlite::params![template, id],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn a_database_already_holding_such_webhooks_starts_serves_and_fails_their_deliveries() {
    let rx = TestReceiver::start().await;
    let h = Herald::start(&[]).await;
    // 170 webhooks, about 20 MB of folded constants each once compiled: more than Herald's
    // memory if any process kept them all.
    let mut ids = Vec::new();
    for i in 0..170 {
        let (s, w) = h
            .webhook(json!({"payload_url": rx.url(&format!("/w{i}")), "body_template": format!("ok {i}")}))
            .await;
        assert_eq!(s, 201, "{w}");
        ids.push(w["id"].as_i64().unwrap());
    }
    let dir = h.stop().await;
    for (i, id) in ids.iter().enumerate() {
        let bomb = format!("{{% if false %}}{{{{ 'yy' * 10**7 }}}}{{% endif %}}ok {i}");
        store_template(dir.path(), *id, "body_template", &bomb);
    }
    // Restarted, it serves at once, and each delivery fails with the reason.
    let h = Herald::start_in(dir, &[]).await;
    h.assert_well().await;
    let (s, posted) = h
        .call("POST", "/api/extras/events/", Some(site_event("created", 3, "Fold")))
        .await;
    assert_eq!(s, 202, "{posted}");
    assert_eq!(posted["deliveries_queued"], 170);
    wait_for(Duration::from_secs(120), "every delivery to fail", || async {
        let (_, l) = h
            .call("GET", "/api/extras/deliveries/?status=failed&limit=1", None)
            .await;
        (l["count"] == 170).then_some(())
    })
    .await;
    let d = h.delivery_of(ids[0]).await;
    let error = d["last_error"].as_str().unwrap();
    assert!(error.contains("body_template") && error.contains("constant"), "{error}");
    assert!(rx.received().is_empty(), "nothing was sent");
    h.assert_well().await;
    // Test-sent and previewed, each is refused naming its field.
    let one = format!("/api/extras/webhooks/{}/", ids[1]);
    for action in ["test/", "preview/"] {
        let (s, b) = h.call("POST", &format!("{one}{action}"), Some(json!({}))).await;
        assert_refused(s, &b, 400, "body_template");
    }
    // Edited, a webhook delivers again.
    let (s, b) = h
        .call("PATCH", &one, Some(json!({"body_template": "fixed {{ data.name }}"})))
        .await;
    assert_eq!(s, 200, "{b}");
    h.call("POST", "/api/extras/events/", Some(site_event("created", 4, "Again")))
        .await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].body, b"fixed Again");
    h.assert_well().await;
}
