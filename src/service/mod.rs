//! The service layer: every rule about what a request may do and what it does, written once
//! for the REST API, the command line and the admin pages. Callers parse their input (JSON
//! bodies, query strings, forms, flags), call a method of `Services`, and shape the answer;
//! failures come back as one `Error` with NetBox-shaped field errors.

mod access;
mod changes;
mod deliveries;
mod event_rules;
mod events;
pub mod filters;
mod objects;
mod ops;
mod passwords;
pub mod sessions;
mod tags;
mod throttle;
mod users;
mod webhooks;

pub use changes::{actions, change_filter, change_json, FILTERS as CHANGE_FILTERS};
pub use deliveries::{
    delivery_filter, delivery_filter_of_body, statuses, DeliveryDetail, QueueSummary, WebhookHealth,
    FILTERS as DELIVERY_FILTERS,
};
pub use event_rules::{EventRuleFilter, FILTERS as EVENT_RULE_FILTERS};
pub use objects::ObjectWrite;
pub use ops::Readiness;
pub use users::NewToken;
pub use webhooks::{TextFilter, TextLookup, WebhookFilter, FILTERS as WEBHOOK_FILTERS};

use crate::auth::{Action, Actor};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::delivery::destinations::Policy;
use crate::outbox::Outbox;
use crate::store::Store;
use crate::webhooks::sandbox::Sandbox;
use std::sync::Arc;

pub use crate::error::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every caller works through.
#[derive(Clone)]
pub struct Services {
    /// Reached only through this layer's methods: the compiler keeps every caller at the door.
    store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
    pub config: Arc<Config>,
    /// Where deliveries and test sends may connect.
    pub destinations: Arc<Policy>,
    /// Where templates render.
    pub sandbox: Arc<Sandbox>,
    /// Password attempts so far.
    throttle: Arc<throttle::Throttle>,
    /// Where passwords are hashed and checked.
    passwords: Arc<passwords::Passwords>,
    outbox: Arc<Outbox>,
    /// What this process measures (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        config: Arc<Config>,
        destinations: Arc<Policy>,
    ) -> Services {
        let sandbox = Arc::new(Sandbox::new(config.templates.limits()));
        let throttle = Arc::new(throttle::Throttle::new(
            config.auth.attempts_per_minute_per_user,
            config.auth.attempts_per_minute_per_address,
        ));
        let outbox = Outbox::new(config.worker.max_batch_events);
        Services {
            store,
            catalog,
            config,
            destinations,
            sandbox,
            throttle,
            passwords: Arc::new(passwords::Passwords::start()),
            outbox,
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }

    /// HTTP clients that send as deliveries do: through the destination policy.
    pub fn clients(&self) -> crate::delivery::send::Clients {
        crate::delivery::send::Clients::new(self.destinations.clone(), self.config.webhooks.ca_dir().map(Into::into))
    }
}

/// `Forbidden` unless `actor` may `action` objects of `object_type`.
fn require(actor: &Actor, object_type: &str, action: Action) -> Result<()> {
    if actor.can(object_type, action) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// Runs slow, blocking work (password hashing) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("a blocking task failed: {e}")))
}
