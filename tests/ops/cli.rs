//! The `herald` command line: migrate, users, tokens and the effective config.

use std::process::Command;

fn herald(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .args(["--database", db])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run herald");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn users_tokens_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let (ok, out, err) = herald(&db, &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("up to date"));
    let (ok, _, err) = herald(&db, &["user", "create", "ops", "--password", "pw"]);
    assert!(ok, "{err}");
    let (ok, _, err) = herald(&db, &["user", "create", "ops", "--password", "pw"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, key, err) = herald(&db, &["token", "create", "--user", "ops", "--read-only"]);
    assert!(ok, "{err}");
    let key = key.trim_end_matches('\n');
    assert_eq!(key.len(), 40, "stdout must be the key alone: {key:?}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    let (ok, _, err) = herald(&db, &["token", "create", "--user", "nobody"]);
    assert!(!ok && err.contains("no user named"), "{err}");

    // Three deliveries queued (no worker runs), then inspected and purged from the CLI.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut config = herald::config::Config::defaults();
        config.database_url = db.clone();
        let app = herald::server::App::open(config).await.unwrap();
        let body = serde_json::json!({"name": "q", "content_types": ["dcim.site"], "type_create": true,
                                      "payload_url": "http://127.0.0.1:9/"});
        app.services().create_webhooks(&herald::auth::Actor::system(), vec![body], false).await.unwrap();
        let events: Vec<serde_json::Value> = (1..=3)
            .map(|i| {
                serde_json::json!({"event": "created", "object_type": "dcim.site", "timestamp": "2026-11-29T00:00:00.000000+00:00",
                                   "username": "cli", "data": {"id": i}})
            })
            .collect();
        for e in events {
            let text = e.to_string();
            app.services()
                .record_events(&herald::auth::Actor::system(), e, text.as_bytes(), &uuid::Uuid::new_v4().to_string())
                .await
                .unwrap();
        }
    });
    let (ok, stats, err) = herald(&db, &["queue", "stats"]);
    assert!(ok, "{err}");
    assert!(
        stats.contains("queued     3") && stats.contains("failed     0"),
        "{stats}"
    );
    assert!(!stats.contains("oldest waiting: none"), "{stats}");
    let (ok, list, _) = herald(&db, &["queue", "list", "--status", "queued"]);
    assert!(
        ok && list.starts_with("3 deliveries") && list.lines().count() == 4,
        "{list}"
    );
    let (ok, out, _) = herald(&db, &["queue", "retry"]);
    assert!(
        ok && out.contains("0 deliveries queued again"),
        "nothing failed yet: {out}"
    );
    let (ok, out, _) = herald(&db, &["queue", "retry", "--id", "1"]);
    assert!(ok && out.contains("1 deliveries queued again"), "{out}");
    let (ok, _, err) = herald(&db, &["queue", "purge"]);
    assert!(!ok && err.contains("give a filter"), "{err}");
    let (ok, out, _) = herald(&db, &["queue", "purge", "--status", "queued"]);
    assert!(ok && out.contains("3 deliveries deleted"), "{out}");
    let (ok, _, err) = herald(&db, &["queue", "list", "--status", "lost"]);
    assert!(!ok && err.contains("unknown status"), "{err}");

    let (ok, cfg, _) = herald(&db, &["print-config"]);
    assert!(ok);
    assert!(cfg.contains(&format!("database_url = \"{db}\"")), "{cfg}");
    assert!(cfg.contains("retry_schedule"));
    let conf = dir.path().join("herald.toml");
    std::fs::write(&conf, "listen = \"127.0.0.1:9999\"\n[ingest]\nsecret = \"hidden\"\n").unwrap();
    let (ok, cfg, err) = herald(&db, &["print-config", "--config", conf.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(cfg.contains("listen = \"127.0.0.1:9999\""), "{cfg}");
    assert!(!cfg.contains("hidden") && cfg.contains("<redacted>"), "{cfg}");
    let (ok, _, err) = herald(&db, &["print-config", "--config", "/nonexistent.toml"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}
