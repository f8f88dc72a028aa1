//! TLS to PostgreSQL: a server of the test's own (initdb into a temporary folder, started as
//! the `postgres` user on a free port, with a certificate for 127.0.0.1 signed by a CA made
//! here) is reached with `sslmode=require` and that CA; without the CA, or without TLS on the
//! server, Herald refuses to connect and says why. Runs where `HERALD_TEST_POSTGRES_URL` is
//! set (a machine with PostgreSQL installed) and the test runs as root.

use herald::config::Config;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's PostgreSQL programs, newest first.
fn postgres_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().collect();
    versions.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
    versions
        .into_iter()
        .map(|e| e.path().join("bin"))
        .find(|p| p.join("initdb").exists())
}

/// Runs `program` as the `postgres` user.
fn as_postgres(program: &std::path::Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    cmd
}

/// A CA (PEM) and a server certificate and key for 127.0.0.1 signed by it.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A PostgreSQL server of this test's own; stopped (by its pid) when dropped.
struct OwnServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server with TLS on (certificate and key given) or off.
async fn own_server(bin: &std::path::Path, tls: Option<(&str, &str)>) -> OwnServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let data = dir.path().join("data");
    let out = as_postgres(&bin.join("initdb"))
        .args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = as_postgres(&bin.join("postgres"));
    cmd.args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("unix_socket_directories={}", dir.path().display()));
    if let Some((cert, key)) = tls {
        for (name, text) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(&path)
                .status()
                .unwrap();
        }
        cmd.args(["-c", "ssl=on"]);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let server = OwnServer { child, port, _dir: dir };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    crate::common::wait_for(
        Duration::from_secs(30),
        "the test's PostgreSQL to accept connections",
        || async {
            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    server
}

async fn open(url: &str, ca_file: &str) -> anyhow::Result<std::sync::Arc<dyn herald::store::Store>> {
    let mut config = Config::defaults().postgres;
    config.pool_size = 2;
    config.connect_timeout_secs = 5.0;
    config.ca_file = ca_file.to_string();
    config.identity_file = String::new();
    herald::store::open(url, &config).await
}

#[tokio::test]
async fn tls_to_postgres_is_verified_and_refused_when_it_cannot_be() {
    if crate::common::postgres::server_url("the PostgreSQL TLS test is not run").is_none() {
        return;
    }
    let Some(bin) = postgres_bin() else {
        panic!("HERALD_TEST_POSTGRES_URL is set but PostgreSQL's programs are not installed");
    };
    assert!(
        rustix::process::geteuid().is_root(),
        "the TLS test starts PostgreSQL as the postgres user, which needs root"
    );
    let (ca, cert, key) = certificates();
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let ca_file = ca_file.display().to_string();

    let server = own_server(&bin, Some((&cert, &key))).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=require", server.port);

    // With the CA: connected over TLS, migrations and writes work.
    let store = open(&url, &ca_file).await.expect("TLS with the test CA");
    store.migrate().await.unwrap();
    store.create_user("tls", "x", false, chrono::Utc::now()).await.unwrap();
    assert_eq!(store.user_count().await.unwrap(), 1);
    let (client, connection) = tokio_postgres::connect(
        &format!("postgres://postgres@127.0.0.1:{}/postgres", server.port),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let encrypted: i64 = client
        .query_one(
            "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) \
             where a.application_name = 'herald' and s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let herald: i64 = client
        .query_one(
            "select count(*) from pg_stat_activity where application_name = 'herald'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        herald >= 1 && encrypted == herald,
        "{encrypted} of {herald} Herald sessions use TLS"
    );
    drop(store);

    // The public roots do not know the test CA: refused, naming the certificate.
    let err = open(&url, "").await.err().expect("an unknown issuer is refused");
    let text = format!("{err:#}").to_lowercase();
    assert!(text.contains("certificate"), "{text}");

    // A CA file without sslmode=require is a mistake, not silently plain text.
    let plain = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let err = open(&plain, &ca_file).await.err().expect("refused");
    assert!(format!("{err:#}").contains("sslmode=require"), "{err:#}");
    drop(server);

    // A server without TLS: sslmode=require is refused, not downgraded.
    let bare = own_server(&bin, None).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=require", bare.port);
    let err = open(&url, &ca_file)
        .await
        .err()
        .expect("no TLS on the server is refused");
    assert!(
        format!("{err:#}").to_lowercase().contains("tls") || format!("{err:#}").to_lowercase().contains("ssl"),
        "{err:#}"
    );
}
