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
