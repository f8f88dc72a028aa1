//! The `herald` command line.

use crate::config::{Config, LogFormat};
use crate::queue::DeliveryFilter;
use crate::server::{shutdown_on_signals, App};
use crate::service::filters::Given;
use crate::service::Services;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "herald", version, about = "NetBox-compatible webhook engine")]
struct Cli {
    /// Configuration file (TOML), applied over the built-in defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL, e.g. sqlite://herald.db (overrides HERALD_DATABASE_URL and the file).
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the API and, unless --no-worker, a delivery worker.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Do not deliver in this process (run `herald worker` elsewhere).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run a delivery worker only.
    Worker,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Inspect and control the delivery queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print the effective configuration (secrets masked).
    PrintConfig,
    /// Print every request sent here and whether its signatures are valid (to see what a
    /// webhook sends).
    Receiver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// The webhook's secret, to check X-Hook-Signature and webhook-signature with.
        #[arg(long)]
        secret: Option<String>,
        /// The status to answer with.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=599))]
        status: u16,
    },
    /// Copy the SQLite database, while Herald runs, into FILE (SQLite's online backup), with
    /// its identity beside it (FILE.id).
    Backup {
        /// The copy to make (it must not exist).
        file: PathBuf,
    },
    /// Render templates for a parent Herald, under a memory bound (started by Herald itself).
    #[command(hide = true)]
    Sandbox,
}

/// Which deliveries a queue command acts on: the delivery list's filters (read by the same
/// rules as the API's and the pages').
#[derive(clap::Args, Debug)]
struct QueueFilter {
    /// Delivery ids.
    #[arg(long)]
    id: Vec<String>,
    /// queued, in_flight, retrying, succeeded or failed.
    #[arg(long)]
    status: Vec<String>,
    /// Webhook ids.
    #[arg(long)]
    webhook: Vec<String>,
    /// Event rule ids.
    #[arg(long)]
    event_rule: Vec<String>,
    /// Object types (dcim.site, ...).
    #[arg(long)]
    object_type: Vec<String>,
    /// Events: created, updated, deleted.
    #[arg(long)]
    event: Vec<String>,
    /// Request ids of the changes.
    #[arg(long)]
    request_id: Vec<String>,
    /// Created at or after (ISO 8601 with a time zone).
    #[arg(long)]
    since: Option<String>,
    /// Created before (ISO 8601 with a time zone).
    #[arg(long)]
    until: Option<String>,
}

impl QueueFilter {
    fn to_filter(&self) -> anyhow::Result<DeliveryFilter> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut add = |name: &str, values: &[String]| {
            pairs.extend(values.iter().map(|v| (name.to_string(), v.clone())));
        };
        add("id", &self.id);
        add("status", &self.status);
        add("webhook_id", &self.webhook);
        add("event_rule_id", &self.event_rule);
        add("object_type", &self.object_type);
        add("event", &self.event);
        add("request_id", &self.request_id);
        add("since", self.since.as_slice());
        add("until", self.until.as_slice());
        crate::service::delivery_filter(&Given::pairs(pairs), &[]).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Deliveries per state, the oldest waiting, failed attempts in the last hour.
    Stats,
    /// Deliveries, newest first.
    List {
        #[command(flatten)]
        filter: QueueFilter,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Make deliveries due now (default: the failed ones); in-flight ones are left alone.
    Retry {
        #[command(flatten)]
        filter: QueueFilter,
    },
    /// Delete queued, retrying or failed deliveries (a filter is required).
    Purge {
        #[command(flatten)]
        filter: QueueFilter,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user.
    Create {
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        superuser: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token and print its key alone on stdout.
    Create {
        #[arg(long)]
        user: String,
        /// The token may only read.
        #[arg(long)]
        read_only: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sandbox = cli.command {
        return crate::webhooks::sandbox::child_main();
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(db) = &cli.database {
        config.database_url = db.clone();
    }
    if let Command::Serve {
        listen: Some(listen), ..
    } = &cli.command
    {
        config.listen = listen.clone();
    }
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Sandbox => Ok(()),
        Command::PrintConfig => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Receiver { listen, secret, status } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            println!(
                "Receiving on http://{}/ (answering {status}{}); Ctrl-C stops",
                listener.local_addr()?,
                if secret.is_some() { ", checking signatures" } else { "" }
            );
            let settings = crate::receiver::Settings {
                secret: secret.filter(|s| !s.is_empty()),
                status: axum::http::StatusCode::from_u16(status).context("--status must be an HTTP status")?,
            };
            Ok(crate::receiver::run(listener, settings, shutdown_on_signals()).await?)
        }
        Command::Backup { file } => {
            let made = crate::store::backup(&config.database_url, &file)?;
            println!(
                "Backed up {} into {} ({} bytes).",
                config.database_url,
                file.display(),
                made.bytes
            );
            println!(
                "To restore: stop Herald, copy {} over the database file{}, and start Herald.",
                file.display(),
                if made.identity.is_some() {
                    format!(
                        " and {}.id over the file beside it (herald.db.id for herald.db)",
                        file.display()
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Command::Migrate => {
            App::open(config).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Serve { no_worker, .. } => {
            let listen = config.listen.clone();
            let app = App::open(config).await?;
            let admin = app
                .services()
                .bootstrap_admin(
                    std::env::var("HERALD_ADMIN_PASSWORD").ok(),
                    std::env::var("HERALD_ADMIN_TOKEN").ok(),
                )
                .await?;
            if let Some((password, token)) = admin {
                println!("Created user admin with password {password}");
                println!("API token for admin: {token}");
                println!("(shown once: store them now)");
            }
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            println!("Herald listening on http://{addr}/api/");
            app.serve(listener, !no_worker, shutdown_on_signals()).await
        }
        Command::Worker => {
            let app = App::open(config).await?;
            app.work(shutdown_on_signals()).await
        }
        Command::User {
            command:
                UserCommand::Create {
                    name,
                    password,
                    superuser,
                },
        } => {
            let app = App::open(config).await?;
            app.services().add_user(&name, &password, superuser).await?;
            println!("created user {name}");
            Ok(())
        }
        Command::Queue { command } => {
            let app = App::open(config).await?;
            queue(app.services(), command).await
        }
        Command::Token {
            command: TokenCommand::Create { user, read_only },
        } => {
            let app = App::open(config).await?;
            let created = app
                .services()
                .add_token_for(&user, !read_only, "created by herald token create")
                .await?;
            println!("{}", created.key);
            Ok(())
        }
    }
}

async fn queue(svc: &Services, command: QueueCommand) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    // Whoever runs the command line on the database's machine may do everything.
    let operator = crate::auth::Actor::system();
    match command {
        QueueCommand::Stats => {
            let stats = svc
                .queue_stats(&operator, now - chrono::Duration::hours(1), None)
                .await?;
            for (status, n) in &stats.counts {
                println!("{:<10} {n}", status.as_str());
            }
            match stats.oldest_waiting {
                Some(t) => println!(
                    "oldest waiting: {} ({:.0} s ago)",
                    crate::events::netbox_timestamp(t),
                    (now - t).num_milliseconds() as f64 / 1000.0
                ),
                None => println!("oldest waiting: none"),
            }
            println!("failed attempts in the last hour: {}", stats.failed_attempts);
        }
        QueueCommand::List { filter, limit } => {
            let page = svc
                .deliveries(&operator, &filter.to_filter()?, limit.clamp(1, 10_000), 0, None)
                .await?;
            println!("{} deliveries", page.count);
            for d in page.items {
                println!(
                    "{:>8}  {:<9}  webhook {:<4} {:<24} {:<8} {} attempt(s)  {}",
                    d.id,
                    d.status.as_str(),
                    d.webhook_id,
                    d.object_type,
                    d.event_kind,
                    d.attempts,
                    d.last_error.unwrap_or_default()
                );
            }
        }
        QueueCommand::Retry { filter } => {
            println!(
                "{} deliveries queued again",
                svc.retry_deliveries(&operator, &filter.to_filter()?).await?
            );
        }
        QueueCommand::Purge { filter } => {
            let deleted = svc
                .delete_deliveries(&operator, &filter.to_filter()?)
                .await
                .map_err(|e| match e {
                    crate::error::Error::Validation(_) => anyhow::anyhow!("give a filter: --id, --status or --webhook"),
                    e => e.into(),
                })?;
            println!("{deleted} deliveries deleted");
        }
    }
    Ok(())
}
