//! NetBox's filters as pynetbox scripts use them, each on data whose answer is known, and the
//! filters and fields Herald does not implement, each refused with a 400 naming it.

use crate::common::{Backend, TestApp};
use serde_json::{json, Value};

async fn pynetbox_filters_answer_right_or_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynetbox/filters.py");
    let out = tokio::process::Command::new(&python)
        .args([script, &app.base, &app.token])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "the pynetbox script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let expected = json!({
        "ip_parent": ["10.1.2.1/24", "10.1.2.2/32"],
        "ip_parent_two": ["10.1.2.1/24", "10.1.2.2/32", "192.0.2.5/24"],
        "ip_mask_length": ["10.1.2.1/24", "192.0.2.5/24"],
        "ip_mask_length_gte": ["10.1.2.1/24", "10.1.2.2/32", "192.0.2.5/24"],
        "prefix_within": ["10.1.0.0/16", "10.1.2.0/24"],
        "prefix_within_include": ["10.1.0.0/16", "10.1.2.0/24"],
        "prefix_contains": ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"],
        "prefix_contains_net": ["10.0.0.0/8", "10.1.0.0/16"],
        "prefix_mask_length": ["10.1.0.0/16", "10.1.2.0/24", "192.0.2.0/24"],
        "prefix_children": ["10.0.0.0/8"],
        "prefix_depth": ["10.1.2.0/24"],
        "iface_mgmt_only": ["fxp0"],
        "iface_not_mgmt": ["ae0", "wlan0", "xe-0/0/0"],
        "iface_virtual": ["ae0"],
        "iface_wireless": ["wlan0"],
        "iface_physical": ["fxp0", "xe-0/0/0"],
        "dev_tag_id": ["edge-r1"],
        "dev_tag_n": ["Edge-R2", "core-sw1"],
        "dev_tag_id_n": ["core-sw1"],
        "dev_regex": ["edge-r1"],
        "dev_iregex": ["Edge-R2", "edge-r1"],
        "hook_payload_url": ["b"],
        "hook_payload_url_ic": ["a"],
        "hook_payload_url_nisw": ["b"],
        "hook_type_create": ["a"],
        "hook_type_update": ["b"],
        "hook_ssl_verification": ["a"],
        "hook_http_content_type": ["b"],
        "refused": {
            "present_in_vrf_id": [400, ["present_in_vrf_id"]],
            "device_id": [400, ["device_id"]],
            "cf_owner": [400, ["cf_owner"]],
            "bad_regex": [400, ["name__regex"]],
            "hook_tags": [400, ["tag"]],
            "latitude_on_device": [400, ["latitude"]],
            "rack": [400, ["rack"]],
            "scope_id": [400, ["scope_id", "scope_type"]],
        },
        "devices_after": ["Edge-R2", "core-sw1", "edge-r1"],
        "strict": {
            "ip_parent": ["10.1.2.1/24", "10.1.2.2/32"],
            "prefix_within": ["10.1.2.0/24"],
            "dev_regex": ["edge-r1"],
            "hook_payload_url_ic": ["a"],
            "rules_enabled": [],
            "deliveries_failed": 0,
        },
        "strict_refused": true,
    });
    for (k, want) in expected.as_object().unwrap() {
        assert_eq!(&seen[k], want, "{k}");
    }
    app.stop().await;
}

crate::on_each_backend!(pynetbox_filters_answer_right_or_are_refused);
