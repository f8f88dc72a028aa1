//! Acceptance: a pynetbox script (pynetbox from PyPI) builds, reads, updates and deletes an
//! inventory in a running Herald; a real receiver gets one correctly signed delivery per object
//! per request per matching webhook, carrying what NetBox would send.

use crate::common::{relative, Backend, TestApp, TestReceiver};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;
use std::collections::{HashMap, HashSet};

async fn a_pynetbox_script_drives_the_inventory_and_receivers_see_netbox_payloads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynetbox/inventory.py");
    let out = tokio::process::Command::new(&python)
        .args([script, &app.base, &app.token, &rx.url("/hook"), "inventory-secret"])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "the pynetbox script failed (is it installed? `pip install -r tests/requirements.txt`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["site_status"], "Active");
    assert_eq!(seen["device_site"], "AMS1");
    assert_eq!(seen["device_manufacturer"], "Juniper");
    assert_eq!(seen["device_interfaces"], json!(["fxp0", "xe-0/0/0", "xe-0/0/1"]));
    assert_eq!(seen["site_devices"], json!(["edge-r1"]));
    assert_eq!(seen["paged_ips"], 5);
    assert_eq!(seen["ip_count"], 5);
    assert_eq!(
        seen["searched"],
        json!([
            "192.0.2.1/24",
            "192.0.2.10/24",
            "192.0.2.11/24",
            "192.0.2.12/24",
            "192.0.2.13/24"
        ])
    );
    assert_eq!(seen["prefix_family"], 4);
    assert_eq!(
        seen["interface_type_choice"],
        json!({"value": "10gbase-x-sfpp", "display_name": "SFP+ (10GE)"})
    );
    assert_eq!(
        seen["site_status_choices"],
        json!(["planned", "staging", "active", "decommissioning", "retired"])
    );
    assert_eq!(seen["mgmt_interfaces"], json!(["fxp0"]));
    assert_eq!(seen["mgmt_only"], true);
    assert_eq!(
        seen["refused"],
        json!({
            "filter": [400, ["device_id"]],
            "custom_field": [400, ["cf_owner"]],
            "field": [400, ["rack"]],
            "webhook_field": [400, ["owner"]],
        })
    );
    assert_eq!(seen["sites_after_refusals"], json!(["ams1"]), "nothing half-written");
    assert_eq!(seen["got_device"], seen["ids"]["device"]);
    assert_eq!(seen["got_status"], "active");
    assert_eq!(seen["saved"], true);
    assert_eq!(seen["updated"], true);
    assert_eq!(seen["bulk_updated"], json!(["Reserved", "Reserved"]));
    assert_eq!(seen["device_serial"], "JN002");
    assert_eq!(seen["deleted_single"], true);
    assert_eq!(seen["deleted_bulk"], true);
    assert_eq!(seen["ips_left"], json!(["192.0.2.1/24", "192.0.2.12/24"]));
    assert_eq!(
        seen["available_first"],
        json!(["192.0.2.2/24", "192.0.2.3/24", "192.0.2.4/24"])
    );
    assert_eq!(
        seen["allocated"],
        json!(["192.0.2.2/24", "192.0.2.3/24", "192.0.2.4/24"])
    );
    assert_eq!(seen["allocated_dns"], "alloc.example.net");

    // 15 creates, 4 updates, 3 deletes and 3 allocations on the first webhook; 2 reserved IPs
    // on the second.
    let got = rx.wait_for(27).await;
    let (all, reserved): (Vec<_>, Vec<_>) = got.iter().partition(|r| r.path == "/hook");
    assert_eq!(
        (all.len(), reserved.len()),
        (25, 2),
        "{:?}",
        got.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let mut events = Vec::new();
    for r in &got {
        let mut mac = Hmac::<Sha512>::new_from_slice(b"inventory-secret").unwrap();
        mac.update(&r.body);
        assert_eq!(
            r.header("x-hook-signature").unwrap(),
            hex::encode(mac.finalize().into_bytes())
        );
        let e: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(e["username"], "admin");
        events.push((r.path.clone(), e));
    }
    let mine: Vec<&Value> = events.iter().filter(|(p, _)| p == "/hook").map(|(_, e)| e).collect();
    // One delivery per object per request.
    let mut keys = HashSet::new();
    for e in &mine {
        let key = (
            e["object_type"].to_string(),
            e["data"]["id"].to_string(),
            e["request_id"].to_string(),
        );
        assert!(keys.insert(key.clone()), "two deliveries for {key:?}");
    }
    let find = |ty: &str, id: &Value, kind: &str| -> Vec<&Value> {
        mine.iter()
            .copied()
            .filter(|e| e["object_type"] == ty && e["data"]["id"] == *id && e["event"] == kind)
            .collect()
    };
    let ids = &seen["ids"];
    let (site_id, device_id) = (&ids["site"], &ids["device"]);

    // Objects untouched since creation: `data` is their REST view now.
    for (ty, path, id) in [
        ("dcim.region", "dcim/regions", &ids["region"]),
        ("dcim.site", "dcim/sites", site_id),
        ("dcim.manufacturer", "dcim/manufacturers", &ids["manufacturer"]),
        ("dcim.devicetype", "dcim/device-types", &ids["devicetype"]),
        ("dcim.devicerole", "dcim/device-roles", &ids["devicerole"]),
        ("ipam.prefix", "ipam/prefixes", &ids["prefix"]),
        ("dcim.interface", "dcim/interfaces", &ids["interfaces"][2]),
    ] {
        let created = find(ty, id, "created");
        assert_eq!(created.len(), 1, "{ty} {id}");
        let (_, view) = app.call("GET", &format!("/api/{path}/{id}/"), None).await;
        assert_eq!(created[0]["data"], relative(view, &app.base), "{ty}");
        assert_eq!(created[0]["snapshots"]["prechange"], Value::Null);
        assert_eq!(created[0]["model"], ty.split('.').nth(1).unwrap());
    }

    // The device: created, then updated by save(); snapshots in the minimal form.
    let created = find("dcim.device", device_id, "created");
    let post = &created[0]["snapshots"]["postchange"];
    assert_eq!(post["site"], *site_id);
    assert_eq!(post["status"], "active");
    assert_eq!(post["tags"], json!([]));
    let updated = find("dcim.device", device_id, "updated");
    assert_eq!(updated.len(), 1);
    let (_, view) = app.call("GET", &format!("/api/dcim/devices/{device_id}/"), None).await;
    assert_eq!(updated[0]["data"], relative(view, &app.base));
    assert_eq!(updated[0]["snapshots"]["prechange"]["serial"], "JN001");
    assert_eq!(updated[0]["snapshots"]["postchange"]["serial"], "JN002");
    assert_eq!(updated[0]["snapshots"]["postchange"]["status"], "planned");
    assert_eq!(updated[0]["snapshots"]["prechange"], *post);

    // Bulk calls share one request id across their objects; separate calls do not.
    let request_of = |ty: &str, id: &Value, kind: &str| find(ty, id, kind)[0]["request_id"].clone();
    let bulk: HashSet<String> = ids["bulk_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| request_of("ipam.ipaddress", id, "created").to_string())
        .collect();
    assert_eq!(bulk.len(), 1);
    let ifaces = &ids["interfaces"];
    assert_eq!(
        request_of("dcim.interface", &ifaces[0], "created"),
        request_of("dcim.interface", &ifaces[1], "created")
    );
    assert_ne!(
        request_of("dcim.interface", &ifaces[0], "created"),
        request_of("dcim.interface", &ifaces[2], "created")
    );
    let bulk_ips = ids["bulk_ips"].as_array().unwrap();
    assert_eq!(
        request_of("ipam.ipaddress", &bulk_ips[0], "updated"),
        request_of("ipam.ipaddress", &bulk_ips[1], "updated")
    );
    assert_eq!(
        request_of("ipam.ipaddress", &bulk_ips[0], "deleted"),
        request_of("ipam.ipaddress", &bulk_ips[1], "deleted")
    );

    // Deletes carry the object as it was, and its last state as prechange.
    let deleted = find("ipam.ipaddress", &bulk_ips[0], "deleted");
    let updated = find("ipam.ipaddress", &bulk_ips[0], "updated");
    assert_eq!(deleted[0]["data"], updated[0]["data"]);
    assert_eq!(
        deleted[0]["snapshots"]["prechange"],
        updated[0]["snapshots"]["postchange"]
    );
    assert_eq!(deleted[0]["snapshots"]["postchange"], Value::Null);
    assert_eq!(deleted[0]["data"]["status"]["value"], "reserved");

    // Allocated addresses fire "created" like any other; the pair shares its request id.
    let allocated = seen["allocated_ids"].as_array().unwrap();
    for id in allocated {
        assert_eq!(find("ipam.ipaddress", id, "created").len(), 1);
    }
    assert_eq!(
        request_of("ipam.ipaddress", &allocated[1], "created"),
        request_of("ipam.ipaddress", &allocated[2], "created")
    );
    assert_ne!(
        request_of("ipam.ipaddress", &allocated[0], "created"),
        request_of("ipam.ipaddress", &allocated[1], "created")
    );

    // The conditional webhook saw just the two IPs made reserved.
    let reserved_ids: HashSet<String> = events
        .iter()
        .filter(|(p, _)| p != "/hook")
        .map(|(_, e)| {
            assert_eq!(e["event"], "updated");
            e["data"]["id"].to_string()
        })
        .collect();
    let want: HashSet<String> = bulk_ips[..2].iter().map(|v| v.to_string()).collect();
    assert_eq!(reserved_ids, want);

    // Every change is in the log under the user who made it.
    let (_, changes) = app
        .call("GET", "/api/extras/object-changes/?limit=0&user_name=admin", None)
        .await;
    assert_eq!(changes["count"], 25);
    let mut per_action: HashMap<String, i64> = HashMap::new();
    for c in changes["results"].as_array().unwrap() {
        *per_action
            .entry(c["action"]["value"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_action,
        HashMap::from([("create".into(), 18), ("update".into(), 4), ("delete".into(), 3)])
    );
    app.stop().await;
}

crate::on_each_backend!(a_pynetbox_script_drives_the_inventory_and_receivers_see_netbox_payloads);
