//! Databases deleted, swapped or re-created under Herald.

use super::{assert_refused, Herald, TOKEN};
use crate::common::site_event;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_database_is_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.db");
    let db = format!("sqlite://{}", file.display());
    let (mut first, _) = crate::common::process::serve(&db, TOKEN, &[], &[]).await;
    first.kill().await.unwrap();
    first.wait().await.unwrap();
    // The file goes (with its journal): Herald refuses to make an empty one in its place.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let herald = env!("CARGO_BIN_EXE_herald");
    let out = refused(herald, &["serve", "--listen", "127.0.0.1:0", "--database", &db]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is gone") && err.contains("Restore"), "{err}");
    assert!(!file.exists(), "no empty database was made");
    // Another database put in its place is refused too.
    std::fs::remove_file(format!("{}.id", file.display())).unwrap();
    let (mut second, _) = crate::common::process::serve(&db, TOKEN, &[], &[]).await;
    second.kill().await.unwrap();
    second.wait().await.unwrap();
    std::fs::write(format!("{}.id", file.display()), "not-this-one\n").unwrap();
    let out = refused(herald, &["serve", "--listen", "127.0.0.1:0", "--database", &db]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the database Herald kept here"));
    // A file Herald may not write is refused at start, not with 500s later.
    std::fs::remove_file(format!("{}.id", file.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = refused(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            herald,
            "migrate",
            "--database",
            &db,
        ],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is read-only"), "{err}");
}

/// Runs a command that must refuse to start: it ends on its own, unsuccessfully, within 30 s.
async fn refused(program: &str, args: &[&str]) -> std::process::Output {
    refused_with(program, args, &[]).await
}

/// `refused`, with more environment.
async fn refused_with(program: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let run = tokio::process::Command::new(program)
        .args(args)
        .env("RUST_LOG", "error")
        .env("HERALD_POSTGRES__IDENTITY_FILE", "")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("it stops by itself instead of serving")
        .unwrap();
    assert!(!out.status.success(), "{program} {args:?} started");
    out
}

#[tokio::test]
async fn a_sqlite_file_deleted_or_replaced_under_herald_stops_writes_with_503() {
    for how in ["deleted", "replaced"] {
        let h = Herald::start(&[]).await;
        let site = |n: &str| json!({"name": n, "slug": n});
        let (s, _) = h.call("POST", "/api/dcim/sites/", Some(site("before"))).await;
        assert_eq!(s, 201);
        let file = h.path().join("herald.db");
        match how {
            "deleted" => std::fs::remove_file(&file).unwrap(),
            _ => {
                let other = h.path().join("other.db");
                rusqlite::Connection::open(&other)
                    .unwrap()
                    .execute_batch("create table t (x); insert into t values (1);")
                    .unwrap();
                std::fs::rename(&other, &file).unwrap();
            }
        }
        // The next write is refused, not acknowledged into a file nobody will read.
        let (s, b) = h.call("POST", "/api/dcim/sites/", Some(site("after"))).await;
        assert_refused(s, &b, 503, how);
        let (s, b) = h
            .call("POST", "/api/extras/events/", Some(site_event("created", 9, "E")))
            .await;
        assert_refused(s, &b, 503, how);
        // The status says why.
        let (s, status) = h.call("GET", "/api/status/", None).await;
        assert_eq!(s, 200);
        assert_eq!(status["database"]["ok"], false, "{status}");
        let problem = status["database"]["problem"].as_str().unwrap();
        assert!(
            problem.contains(&format!("was {how}")) || problem.contains(how),
            "{problem}"
        );
        h.assert_well().await;
    }
}

#[tokio::test]
async fn a_postgres_database_dropped_and_made_anew_is_refused_at_start() {
    let Some(server) = crate::common::postgres::server_url("the PostgreSQL identity check is not tested") else {
        return;
    };
    let db = crate::common::postgres::scratch_db(&server).await;
    let ids = tempfile::tempdir().unwrap();
    let noted = ids.path().join("herald-postgres.id");
    let noted_str = noted.display().to_string();
    let env = [("HERALD_POSTGRES__IDENTITY_FILE", noted_str.as_str())];
    let (first, base) = crate::common::process::serve(&db.url, TOKEN, &[], &env).await;
    let h = Herald::attach(first, base);
    let (s, _) = h
        .call(
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "kept", "slug": "kept"})),
        )
        .await;
    assert_eq!(s, 201);
    h.assert_well().await;
    drop(h);
    assert!(noted.exists(), "the identity is noted");
    // The database is dropped and made again, empty, under the same name.
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let (admin, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    for statement in [
        format!("drop database \"{name}\" with (force)"),
        format!("create database \"{name}\""),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let herald = env!("CARGO_BIN_EXE_herald");
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0", "--database", &db.url],
        vec!["worker", "--database", &db.url],
        vec!["migrate", "--database", &db.url],
    ] {
        let out = refused_with(herald, &args, &env).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is empty") && err.contains(&noted_str), "{args:?}: {err}");
    }
    // Nothing was made in it: no schema, no admin.
    let (c, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let tables: i64 = c
        .query_one("select count(*) from pg_tables where schemaname = 'public'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    // Told to use it from now on (its line removed), Herald sets it up anew.
    std::fs::remove_file(&noted).unwrap();
    let (again, base) = crate::common::process::serve(&db.url, TOKEN, &[], &env).await;
    let h = Herald::attach(again, base);
    h.assert_well().await;
}
