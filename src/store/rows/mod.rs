//! Rows as records, once for every backend: the statements every database reads the same way,
//! how a row becomes a user, a webhook, a delivery, ..., and which values a record writes. A
//! backend only says how to read one column of its rows (`Columns`).
//!
//! Stored times are microseconds since the Unix epoch; JSON is stored as text (objects' data
//! may be a native JSON column: `Columns::json` reads either).

mod objects;
mod queue;

pub use objects::*;
pub use queue::*;

use super::sql::Arg;
use super::{Result, StoreError, TriggerVersions, Unique};
use crate::auth::{Action, Group, Permission, Session, Token, User};
use crate::events::EventKind;
use crate::webhooks::{EventRule, HttpMethod, Webhook};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Reading one column of a row by name.
pub trait Columns {
    fn text(&self, name: &str) -> Result<String>;
    fn opt_text(&self, name: &str) -> Result<Option<String>>;
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
    fn flag(&self, name: &str) -> Result<bool>;
    fn opt_real(&self, name: &str) -> Result<Option<f64>>;

    /// A JSON column; SQL null is JSON null.
    fn json(&self, name: &str) -> Result<Value> {
        match self.opt_text(name)? {
            Some(text) => parse_json(&text),
            None => Ok(Value::Null),
        }
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>> {
        from_micros(self.int(name)?)
    }
}

pub fn from_micros(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("stored time {us} is out of range")))
}

pub fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(anyhow::Error::new(e).context("stored JSON is invalid"))
}

pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(json_err)
}

/// JSON text as an argument.
pub fn json_arg<T: serde::Serialize>(v: &T) -> Result<Arg> {
    serde_json::to_string(v).map(Arg::Text).map_err(json_err)
}

/// A stored value that is not one Herald writes.
fn invalid(what: &str, value: &str) -> StoreError {
    StoreError::Other(anyhow::anyhow!("stored {what} {value:?} is invalid"))
}

/// The first record, or `NotFound`.
pub fn one<T>(rows: Vec<T>) -> Result<T> {
    rows.into_iter().next().ok_or(StoreError::NotFound)
}

// Users, tokens, groups and permissions.

pub const USER_SELECT: &str =
    "select id as user_id, username, password_hash, is_superuser, created_at as user_created from users";

pub const TOKEN_SELECT: &str = "select t.id, t.user_id, t.write_enabled, t.description, t.created_at, u.username, \
     u.password_hash, u.is_superuser, u.created_at as user_created from tokens t join users u on u.id = t.user_id";

pub const PERMISSION_SELECT: &str = "select p.* from permissions p";

pub const SESSION_SELECT: &str = "select s.key_hash, s.user_id, s.csrf, s.created_at, s.expires_at, \
     u.username, u.password_hash, u.is_superuser, u.created_at as user_created \
     from sessions s join users u on u.id = s.user_id";

/// A row of `SESSION_SELECT`.
pub fn session_and_user(row: &dyn Columns) -> Result<(Session, User)> {
    let session = Session {
        key_hash: row.text("key_hash")?,
        user_id: row.int("user_id")?,
        csrf: row.text("csrf")?,
        created: row.time("created_at")?,
        expires: row.time("expires_at")?,
    };
    Ok((session, user(row)?))
}

/// The columns a session writes, in the order of `session_args`.
pub const SESSION_COLUMNS: &str = "key_hash, user_id, csrf, created_at, expires_at";

pub fn session_args(s: &Session) -> [Arg; 5] {
    [
        Arg::from(&s.key_hash),
        Arg::Int(s.user_id),
        Arg::from(&s.csrf),
        Arg::from(s.created),
        Arg::from(s.expires),
    ]
}

/// A row of `USER_SELECT` (or `TOKEN_SELECT`).
pub fn user(row: &dyn Columns) -> Result<User> {
    Ok(User {
        id: row.int("user_id")?,
        username: row.text("username")?,
        password_hash: row.text("password_hash")?,
        is_superuser: row.flag("is_superuser")?,
        created: row.time("user_created")?,
    })
}

/// A row of `TOKEN_SELECT`.
pub fn token_and_user(row: &dyn Columns) -> Result<(Token, User)> {
    let token = Token {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        write_enabled: row.flag("write_enabled")?,
        description: row.text("description")?,
        created: row.time("created_at")?,
    };
    Ok((token, user(row)?))
}

pub fn group(row: &dyn Columns) -> Result<Group> {
    Ok(Group {
        id: row.int("id")?,
        name: row.text("name")?,
        description: row.text("description")?,
    })
}

/// A row of `PERMISSION_SELECT`, without its users and groups (stored apart).
pub fn permission(row: &dyn Columns) -> Result<Permission> {
    let actions: Vec<String> = parse_json(&row.text("actions")?)?;
    Ok(Permission {
        id: row.int("id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        enabled: row.flag("enabled")?,
        object_types: parse_json(&row.text("object_types")?)?,
        actions: actions
            .iter()
            .map(|a| Action::parse(a).ok_or_else(|| invalid("action", a)))
            .collect::<Result<_>>()?,
        users: Vec::new(),
        groups: Vec::new(),
        created: row.time("created_at")?,
        last_updated: row.time("updated_at")?,
    })
}

/// A permission's object types and actions, as stored.
pub fn permission_args(p: &Permission) -> Result<(Arg, Arg)> {
    let actions: Vec<&str> = p.actions.iter().map(|a| a.as_str()).collect();
    Ok((json_arg(&p.object_types)?, json_arg(&actions)?))
}

/// Adds each `(permission, member)` pair to its permission's users (`users`) or groups.
pub fn attach_members(perms: &mut [Permission], pairs: Vec<(i64, i64)>, users: bool) {
    let index: std::collections::HashMap<i64, usize> = perms.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    for (pid, member) in pairs {
        if let Some(&i) = index.get(&pid) {
            match users {
                true => perms[i].users.push(member),
                false => perms[i].groups.push(member),
            }
        }
    }
}

/// A permission's users (`users`) or groups.
pub fn members(p: &Permission, users: bool) -> &[i64] {
    if users {
        &p.users
    } else {
        &p.groups
    }
}

/// The tables holding permissions' members: (table, column, users or not).
pub const PERMISSION_MEMBERS: [(&str, &str, bool); 2] = [
    ("permission_users", "user_id", true),
    ("permission_groups", "group_id", false),
];

// Webhooks and event rules.

/// A configuration record kept whole (webhooks, event rules): its table, the columns it writes
/// and how it reads its row, so that each backend stores every such record with one set of
/// statements.
pub trait Record: Sized + Send + Sync + 'static {
    const TABLE: &'static str;
    /// The columns `args` writes, in its order (besides `id` and the times).
    const COLUMNS: &'static [&'static str];
    /// What a taken name is.
    const UNIQUE: Unique;
    /// The condition the records still in use meet (deleted ones may stay for the log).
    const LIVE: &'static str;
    fn args(&self) -> Result<Vec<Arg>>;
    fn read(row: &dyn Columns) -> Result<Self>;
    fn id(&self) -> i64;
    /// Takes the id and times a write gave it; `created` only when it was created.
    fn stamp(&mut self, id: i64, created: Option<DateTime<Utc>>, updated: DateTime<Utc>);
}

impl Record for Webhook {
    const TABLE: &'static str = "webhooks";
    const COLUMNS: &'static [&'static str] = &WEBHOOK_COLUMNS;
    const UNIQUE: Unique = Unique::WEBHOOK_NAME;
    const LIVE: &'static str = "deleted_at is null";
    fn args(&self) -> Result<Vec<Arg>> {
        webhook_args(self)
    }
    fn read(row: &dyn Columns) -> Result<Self> {
        webhook(row)
    }
    fn id(&self) -> i64 {
        self.id
    }
    fn stamp(&mut self, id: i64, created: Option<DateTime<Utc>>, updated: DateTime<Utc>) {
        self.id = id;
        self.created = created.unwrap_or(self.created);
        self.last_updated = updated;
    }
}

impl Record for EventRule {
    const TABLE: &'static str = "event_rules";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "description",
        "object_types",
        "event_types",
        "enabled",
        "conditions",
        "action_object_id",
        "tags",
    ];
    const UNIQUE: Unique = Unique::EVENT_RULE_NAME;
    const LIVE: &'static str = "1 = 1";
    fn args(&self) -> Result<Vec<Arg>> {
        let kinds: Vec<&str> = self.event_types.iter().map(|k| k.as_str()).collect();
        Ok(vec![
            Arg::from(&self.name),
            Arg::from(&self.description),
            json_arg(&self.object_types)?,
            json_arg(&kinds)?,
            Arg::Bool(self.enabled),
            self.conditions.as_ref().map_or(Arg::Null, |c| Arg::Text(c.to_string())),
            Arg::Int(self.webhook_id),
            json_arg(&self.tags)?,
        ])
    }
    fn read(row: &dyn Columns) -> Result<Self> {
        let kinds: Vec<String> = parse_json(&row.text("event_types")?)?;
        let conditions = row.json("conditions")?;
        Ok(EventRule {
            id: row.int("id")?,
            name: row.text("name")?,
            description: row.text("description")?,
            object_types: parse_json(&row.text("object_types")?)?,
            event_types: kinds
                .iter()
                .map(|k| EventKind::parse(k).ok_or_else(|| invalid("event type", k)))
                .collect::<Result<_>>()?,
            enabled: row.flag("enabled")?,
            conditions: (!conditions.is_null()).then_some(conditions),
            webhook_id: row.int("action_object_id")?,
            tags: parse_json(&row.text("tags")?)?,
            created: row.time("created_at")?,
            last_updated: row.time("updated_at")?,
        })
    }
    fn id(&self) -> i64 {
        self.id
    }
    fn stamp(&mut self, id: i64, created: Option<DateTime<Utc>>, updated: DateTime<Utc>) {
        self.id = id;
        self.created = created.unwrap_or(self.created);
        self.last_updated = updated;
    }
}

/// The columns a webhook writes, in the order of `webhook_args`: its fields, named alike, then
/// its rotation and what disabled it.
pub const WEBHOOK_COLUMNS: [&str; 27] = {
    // The fields requests name, then what only Herald writes.
    const STORED: [&str; 4] = [
        "previous_secret",
        "previous_secret_until",
        "disabled_reason",
        "disabled_at",
    ];
    let fields = crate::webhooks::FIELDS;
    assert!(
        fields.len() + STORED.len() == 27,
        "WEBHOOK_COLUMNS is the fields and STORED"
    );
    let mut all = [""; 27];
    let mut i = 0;
    while i < fields.len() {
        all[i] = fields[i];
        i += 1;
    }
    let mut j = 0;
    while j < STORED.len() {
        all[i + j] = STORED[j];
        j += 1;
    }
    all
};

/// What a webhook writes, in the order of `WEBHOOK_COLUMNS`.
pub fn webhook_args(w: &Webhook) -> Result<Vec<Arg>> {
    let opt = |s: Option<String>| s.map_or(Arg::Null, Arg::Text);
    Ok(vec![
        Arg::from(&w.name),
        Arg::from(&w.description),
        json_arg(&w.content_types)?,
        Arg::Bool(w.type_create),
        Arg::Bool(w.type_update),
        Arg::Bool(w.type_delete),
        Arg::Bool(w.enabled),
        Arg::from(&w.payload_url),
        Arg::from(w.http_method.as_str()),
        Arg::from(&w.http_content_type),
        Arg::from(&w.additional_headers),
        Arg::from(&w.body_template),
        Arg::from(&w.secret),
        Arg::Bool(w.ssl_verification),
        opt(w.ca_file_path.clone()),
        Arg::Int(i64::from(w.timeout)),
        match &w.retry_schedule {
            Some(s) => json_arg(s)?,
            None => Arg::Null,
        },
        opt(w.conditions.as_ref().map(|c| c.to_string())),
        json_arg(&w.tags)?,
        w.rate_limit.map_or(Arg::Null, Arg::Real),
        Arg::Bool(w.ordered),
        Arg::Bool(w.batch),
        Arg::from(w.signature_scheme.as_str()),
        Arg::from(&w.previous_secret),
        w.previous_secret_until.map_or(Arg::Null, Arg::from),
        Arg::from(&w.disabled_reason),
        w.disabled_at.map_or(Arg::Null, Arg::from),
    ])
}

/// A row of `webhooks`.
pub fn webhook(row: &dyn Columns) -> Result<Webhook> {
    let method = row.text("http_method")?;
    let conditions = row.json("conditions")?;
    let retry_schedule = match row.json("retry_schedule")? {
        Value::Null => None,
        v => Some(serde_json::from_value(v).map_err(json_err)?),
    };
    Ok(Webhook {
        id: row.int("id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        content_types: parse_json(&row.text("content_types")?)?,
        type_create: row.flag("type_create")?,
        type_update: row.flag("type_update")?,
        type_delete: row.flag("type_delete")?,
        enabled: row.flag("enabled")?,
        payload_url: row.text("payload_url")?,
        http_method: HttpMethod::parse(&method).ok_or_else(|| invalid("HTTP method", &method))?,
        http_content_type: row.text("http_content_type")?,
        additional_headers: row.text("additional_headers")?,
        body_template: row.text("body_template")?,
        secret: row.text("secret")?,
        ssl_verification: row.flag("ssl_verification")?,
        ca_file_path: row.opt_text("ca_file_path")?,
        timeout: u32::try_from(row.int("timeout")?).unwrap_or(u32::MAX),
        retry_schedule,
        conditions: (!conditions.is_null()).then_some(conditions),
        tags: parse_json(&row.text("tags")?)?,
        rate_limit: row.opt_real("rate_limit")?,
        ordered: row.flag("ordered")?,
        batch: row.flag("batch")?,
        signature_scheme: {
            let s = row.text("signature_scheme")?;
            crate::webhooks::signature::Scheme::parse(&s).ok_or_else(|| invalid("signature scheme", &s))?
        },
        previous_secret: row.text("previous_secret")?,
        previous_secret_until: row.opt_int("previous_secret_until")?.map(from_micros).transpose()?,
        disabled_reason: row.text("disabled_reason")?,
        disabled_at: row.opt_int("disabled_at")?.map(from_micros).transpose()?,
        created: row.time("created_at")?,
        last_updated: row.time("updated_at")?,
    })
}

/// A webhook's or an event rule's id and version.
pub fn record_version(row: &dyn Columns) -> Result<(i64, DateTime<Utc>)> {
    Ok((row.int("id")?, row.time("updated_at")?))
}

/// What the outbox's matcher depends on, in one read: the enabled webhooks' versions, then
/// every event rule's (`true` marks a webhook), each by id.
pub const TRIGGER_VERSIONS: &str = "select true as webhook, id, updated_at from webhooks where enabled = true \
     union all select false as webhook, id, updated_at from event_rules order by webhook desc, id";

/// A row of `TRIGGER_VERSIONS`: whether it is a webhook's, and the version.
pub fn trigger_version(row: &dyn Columns) -> Result<(bool, (i64, DateTime<Utc>))> {
    Ok((row.flag("webhook")?, record_version(row)?))
}

/// `TRIGGER_VERSIONS`' rows as the webhooks' versions and the rules'.
pub fn split_trigger_versions(rows: Vec<(bool, (i64, DateTime<Utc>))>) -> TriggerVersions {
    let (webhooks, rules): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(webhook, _)| *webhook);
    (
        webhooks.into_iter().map(|(_, v)| v).collect(),
        rules.into_iter().map(|(_, v)| v).collect(),
    )
}

/// The addresses of API nodes, from their JSON lists; a list that does not read is skipped.
pub fn address_lists(lists: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lists
        .iter()
        .filter_map(|l| serde_json::from_str::<Vec<String>>(l).ok())
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}
