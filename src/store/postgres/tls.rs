//! How connections to PostgreSQL are made: in the clear, or, when the URL says
//! `sslmode=require`, over TLS with the server's certificate verified (name included) against
//! `postgres.ca_file` or, without one, the public roots. Herald never takes TLS without
//! verifying: a server it cannot verify is refused, with the reason.

use super::PostgresConfig;
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Clone)]
pub enum Tls {
    Off,
    On(MakeRustlsConnect),
}

impl Tls {
    pub fn for_config(pg: &tokio_postgres::Config, config: &PostgresConfig) -> anyhow::Result<Tls> {
        if pg.get_ssl_mode() != SslMode::Require {
            anyhow::ensure!(
                config.ca_file.is_empty(),
                "postgres.ca_file is set but the database URL does not ask for TLS: add sslmode=require"
            );
            return Ok(Tls::Off);
        }
        let mut roots = rustls::RootCertStore::empty();
        if config.ca_file.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            let pem = std::fs::read(&config.ca_file)
                .with_context(|| format!("postgres.ca_file {}: cannot read it", config.ca_file))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.with_context(|| format!("postgres.ca_file {}: not PEM certificates", config.ca_file))?;
                roots
                    .add(cert)
                    .with_context(|| format!("postgres.ca_file {}: a certificate is invalid", config.ca_file))?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "postgres.ca_file {}: no certificate in it",
                config.ca_file
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS settings")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls::On(MakeRustlsConnect::new(tls)))
    }
}
