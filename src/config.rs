//! Configuration: embedded defaults, then an optional file, then `HERALD_*` variables; the CLI
//! applies its flags last.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::store::postgres::PostgresConfig;
pub use crate::store::redact_url;

/// The documented defaults, embedded in the binary.
pub const DEFAULTS: &str = include_str!("../herald.default.toml");

#[derive(Clone, Serialize, Deserialize)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub log_format: LogFormat,
    /// A catalog file replacing the built-in object types (empty: the built-in ones).
    pub catalog: String,
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub webhooks: WebhooksConfig,
    pub templates: TemplatesConfig,
    pub destinations: DestinationsConfig,
    pub postgres: PostgresConfig,
    pub worker: WorkerConfig,
    pub retention: RetentionConfig,
    pub ingest: IngestConfig,
    pub notices: NoticesConfig,
    pub metrics: MetricsConfig,
}

/// Who may read `/metrics`, and where else it is served.
#[derive(Clone, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// The bearer token `/metrics` on the API's port asks for (empty: it answers nobody there).
    pub token: String,
    /// A listener of its own for `/metrics`, `/healthz` and `/readyz`, open (empty: none).
    pub listen: String,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &if self.token.is_empty() { "" } else { "<redacted>" })
            .field("listen", &self.listen)
            .finish()
    }
}

/// Where Herald tells its operator about webhooks in trouble.
#[derive(Clone, Serialize, Deserialize)]
pub struct NoticesConfig {
    /// Empty: no notices.
    pub url: String,
    pub secret: String,
    pub failing_after: i64,
    /// Where the pages are, for the notices' links (empty: links are paths).
    pub base_url: String,
}

impl std::fmt::Debug for NoticesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticesConfig")
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "<redacted>" })
            .field("failing_after", &self.failing_after)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// Password attempts (logins, token provisioning).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthConfig {
    pub attempts_per_minute_per_user: u32,
    pub attempts_per_minute_per_address: u32,
    /// Days a browser session lasts unused.
    pub session_days: f64,
}

/// What webhooks may point at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhooksConfig {
    /// The folder CA files (`ca_file_path`) must be in; empty: anywhere.
    pub ca_dir: String,
}

impl WebhooksConfig {
    pub fn ca_dir(&self) -> Option<&std::path::Path> {
        (!self.ca_dir.is_empty()).then(|| std::path::Path::new(&self.ca_dir))
    }
}

/// The template sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplatesConfig {
    pub sandbox_processes: usize,
    pub memory_mib: u64,
    pub timeout_secs: f64,
    /// The `herald` binary the sandbox runs; empty: this one.
    pub program: String,
}

impl TemplatesConfig {
    /// The sandbox's limits.
    pub fn limits(&self) -> crate::webhooks::sandbox::Limits {
        let program = if self.program.is_empty() {
            std::env::current_exe().unwrap_or_else(|_| "herald".into())
        } else {
            self.program.clone().into()
        };
        crate::webhooks::sandbox::Limits {
            program,
            processes: self.sandbox_processes,
            memory_bytes: self.memory_mib * 1024 * 1024,
            timeout: std::time::Duration::from_secs_f64(self.timeout_secs),
        }
    }
}

/// Where deliveries and test sends may connect (see `delivery::destinations`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationsConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub deny_own_address: bool,
}

/// Bounds on what one client can make the API server hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    pub max_bulk_items: usize,
    pub max_json_values: usize,
    pub max_connections: usize,
    pub header_read_timeout_secs: f64,
    pub idle_timeout_secs: f64,
    pub body_read_timeout_secs: f64,
    pub max_uri_bytes: usize,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionConfig {
    pub succeeded_days: f64,
    pub failed_days: f64,
    /// Days object changes are kept (0: forever), as NetBox's CHANGELOG_RETENTION.
    pub changelog_days: f64,
    pub interval_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub batch_size: usize,
    pub lease_margin_secs: u64,
    pub poll_interval_secs: f64,
    pub retry_schedule: Vec<f64>,
    pub retry_jitter: f64,
    pub response_body_limit: usize,
    pub per_destination_concurrency: usize,
    pub throttle_backoff_secs: f64,
    pub retry_after_max_secs: f64,
    pub shutdown_grace_secs: f64,
    pub max_claims_without_outcome: i64,
    pub disable_failing_after_secs: f64,
    pub health_interval_secs: f64,
    /// Events one batched delivery carries at most (a write making more sends several).
    pub max_batch_events: usize,
}

impl WorkerConfig {
    /// The retry rules for a webhook (its own schedule, or the configured one).
    pub fn policy<'a>(&'a self, webhook_schedule: Option<&'a [f64]>) -> crate::queue::policy::Policy<'a> {
        crate::queue::policy::Policy {
            schedule: webhook_schedule.unwrap_or(&self.retry_schedule),
            jitter: self.retry_jitter,
            throttle_min: std::time::Duration::from_secs_f64(self.throttle_backoff_secs),
            retry_after_max: std::time::Duration::from_secs_f64(self.retry_after_max_secs),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct IngestConfig {
    pub secret: String,
    pub dedup_window_secs: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("log_format", &self.log_format)
            .field("catalog", &self.catalog)
            .field("api", &self.api)
            .field("auth", &self.auth)
            .field("webhooks", &self.webhooks)
            .field("templates", &self.templates)
            .field("destinations", &self.destinations)
            .field("postgres", &self.postgres)
            .field("worker", &self.worker)
            .field("retention", &self.retention)
            .field("metrics", &self.metrics)
            .field(
                "ingest.secret",
                &if self.ingest.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl Config {
    /// Defaults, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(
            Env::prefixed("HERALD_")
                .split("__")
                .ignore(&["admin_password", "admin_token"]),
        );
        let config: Config = fig.extract()?;
        config.check()?;
        Ok(config)
    }

    /// The built-in defaults alone.
    pub fn defaults() -> Config {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("embedded defaults are valid")
    }

    fn check(&self) -> anyhow::Result<()> {
        let a = &self.api;
        for (name, v) in [
            ("api.max_body_bytes", a.max_body_bytes),
            ("api.max_bulk_items", a.max_bulk_items),
            ("api.max_json_values", a.max_json_values),
            ("api.max_connections", a.max_connections),
            ("api.max_uri_bytes", a.max_uri_bytes),
        ] {
            anyhow::ensure!(v >= 1, "{name} must be at least 1");
        }
        for (name, v) in [
            ("api.header_read_timeout_secs", a.header_read_timeout_secs),
            ("api.idle_timeout_secs", a.idle_timeout_secs),
            ("api.body_read_timeout_secs", a.body_read_timeout_secs),
        ] {
            anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be a positive number");
        }
        anyhow::ensure!(
            self.auth.session_days.is_finite() && self.auth.session_days > 0.0,
            "auth.session_days must be a positive number"
        );
        let p = &self.postgres;
        anyhow::ensure!(p.pool_size >= 1, "postgres.pool_size must be at least 1");
        for (name, v) in [
            ("postgres.connect_timeout_secs", p.connect_timeout_secs),
            ("postgres.statement_timeout_secs", p.statement_timeout_secs),
            ("postgres.acquire_timeout_secs", p.acquire_timeout_secs),
        ] {
            anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be a positive number");
        }
        let t = &self.templates;
        anyhow::ensure!(
            t.sandbox_processes >= 1,
            "templates.sandbox_processes must be at least 1"
        );
        anyhow::ensure!(t.memory_mib >= 8, "templates.memory_mib must be at least 8");
        anyhow::ensure!(
            t.timeout_secs.is_finite() && t.timeout_secs > 0.0,
            "templates.timeout_secs must be a positive number"
        );
        let w = &self.worker;
        anyhow::ensure!(w.concurrency >= 1, "worker.concurrency must be at least 1");
        anyhow::ensure!(
            w.max_claims_without_outcome >= 1,
            "worker.max_claims_without_outcome must be at least 1"
        );
        anyhow::ensure!(
            w.disable_failing_after_secs.is_finite() && w.disable_failing_after_secs > 0.0,
            "worker.disable_failing_after_secs must be a positive number"
        );
        anyhow::ensure!(
            w.health_interval_secs.is_finite() && w.health_interval_secs > 0.0,
            "worker.health_interval_secs must be a positive number"
        );
        anyhow::ensure!(
            self.notices.failing_after >= 1,
            "notices.failing_after must be at least 1"
        );
        let m = &self.metrics;
        anyhow::ensure!(
            m.listen.is_empty() || m.listen.parse::<std::net::SocketAddr>().is_ok(),
            "metrics.listen must be an address and port, such as 127.0.0.1:9464"
        );
        anyhow::ensure!(
            m.token.is_empty() || (m.token.len() >= 16 && m.token.bytes().all(|b| b.is_ascii_graphic())),
            "metrics.token must be at least 16 printable characters, without spaces"
        );
        anyhow::ensure!(w.batch_size >= 1, "worker.batch_size must be at least 1");
        anyhow::ensure!(
            (1..=10_000).contains(&w.max_batch_events),
            "worker.max_batch_events must be from 1 to 10000"
        );
        anyhow::ensure!(
            w.per_destination_concurrency >= 1,
            "worker.per_destination_concurrency must be at least 1"
        );
        for (name, v) in [
            ("worker.throttle_backoff_secs", w.throttle_backoff_secs),
            ("worker.retry_after_max_secs", w.retry_after_max_secs),
            ("worker.shutdown_grace_secs", w.shutdown_grace_secs),
            ("retention.succeeded_days", self.retention.succeeded_days),
            ("retention.failed_days", self.retention.failed_days),
            ("retention.changelog_days", self.retention.changelog_days),
        ] {
            anyhow::ensure!(v.is_finite() && v >= 0.0, "{name} must be a non-negative number");
        }
        anyhow::ensure!(
            self.retention.interval_secs > 0.0,
            "retention.interval_secs must be positive"
        );
        anyhow::ensure!(w.poll_interval_secs > 0.0, "worker.poll_interval_secs must be positive");
        anyhow::ensure!(
            (0.0..1.0).contains(&w.retry_jitter),
            "worker.retry_jitter must be in [0, 1)"
        );
        anyhow::ensure!(
            w.retry_schedule.iter().all(|s| s.is_finite() && *s >= 0.0),
            "worker.retry_schedule must hold non-negative numbers of seconds"
        );
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.ingest.secret.is_empty() {
            shown.ingest.secret = "<redacted>".into();
        }
        if !shown.notices.secret.is_empty() {
            shown.notices.secret = "<redacted>".into();
        }
        if !shown.metrics.token.is_empty() {
            shown.metrics.token = "<redacted>".into();
        }
        shown.database_url = redact_url(&shown.database_url);
        toml::to_string(&shown).unwrap_or_else(|e| format!("# the configuration cannot be shown as TOML: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            redact_url("postgres://herald:s3cret@db.example:5432/herald"),
            "postgres://herald:<redacted>@db.example:5432/herald"
        );
        assert_eq!(redact_url("postgres://herald@db/h"), "postgres://herald@db/h");
        assert_eq!(redact_url("sqlite://herald.db"), "sqlite://herald.db");
    }

    #[test]
    fn defaults_parse_and_check() {
        let c = Config::defaults();
        c.check().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.worker.retry_schedule.len(), 9);
        assert!(!format!("{c:?}").contains("secret\": \"x"));
    }

    #[test]
    fn the_metrics_token_is_masked_and_checked() {
        let mut c = Config::defaults();
        c.metrics.token = "a-metrics-token-of-enough-length".into();
        c.check().unwrap();
        assert!(!c.to_toml().contains("a-metrics-token"), "{}", c.to_toml());
        assert!(!format!("{c:?}").contains("a-metrics-token"));
        c.metrics.token = "short".into();
        assert!(c.check().unwrap_err().to_string().contains("metrics.token"));
        c.metrics.token = String::new();
        c.metrics.listen = "not an address".into();
        assert!(c.check().unwrap_err().to_string().contains("metrics.listen"));
        c.metrics.listen = "127.0.0.1:9464".into();
        c.check().unwrap();
    }
}
