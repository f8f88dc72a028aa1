//! The rules of object writes, over any backend's `ObjectTx`: validation, foreign keys,
//! uniqueness, PROTECT / CASCADE / SET_NULL, change records, and one event per object per
//! request (NetBox's coalescing).

use super::values::{as_integer, clean};
use super::view::{self, load_related, Related, TAG_TYPE};
use super::{ipam, Change, Obj, ObjectTx, Ref, TxLoader};
use crate::catalog::{Catalog, FieldKind, ObjectType, OnDelete};
use crate::events::{netbox_timestamp, Event, EventKind};
use crate::store::StoreError;
use crate::validate::{type_name, FieldErrors};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// One operation of a request.
#[derive(Debug, Clone)]
pub enum Op {
    Create(Value),
    /// `partial`: PATCH (only the given fields); else PUT (required fields must be given).
    Update {
        id: i64,
        body: Value,
        partial: bool,
    },
    Delete(i64),
    /// Creates an IP address (the request's type) at the first free address of a prefix.
    CreateAvailableIp {
        prefix_id: i64,
        body: Value,
    },
}

/// The writes of one API request, on objects of one type.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub object_type: String,
    pub ops: Vec<Op>,
    /// A list body (errors are reported per item).
    pub bulk: bool,
    pub user_id: Option<i64>,
    pub username: String,
    pub request_id: String,
    pub now: DateTime<Utc>,
}

/// What a request wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Per operation: the object's REST view after the request (relative `url`s); null for
    /// deletes.
    pub views: Vec<Value>,
    /// One per object touched, in the order first touched.
    pub events: Vec<Event>,
    pub changes: Vec<Change>,
}

/// Why a request wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Field errors: one map per operation (empty for those that were fine).
    #[error("invalid input")]
    Invalid(Vec<FieldErrors>),
    /// The one object a request named does not exist.
    #[error("not found")]
    NotFound,
    /// The request conflicts with the inventory: dependents protect an object from deletion,
    /// or a prefix has no free address left.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Fail {
    Fields(FieldErrors),
    Missing(i64),
    Conflict(String),
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

/// The object an event is about, as the request leaves it.
struct Touch {
    ty: String,
    id: i64,
    kind: EventKind,
    pre: Value,
    post: Value,
    /// The view before deletion (for deleted objects).
    last_view: Value,
}

struct Run<'a> {
    catalog: &'a Catalog,
    tx: &'a mut dyn ObjectTx,
    req: &'a WriteRequest,
    changes: Vec<Change>,
    touched: Vec<Touch>,
    index: HashMap<(String, i64), usize>,
    /// Tags and foreign-key targets loaded so far.
    related: Related,
    /// Objects as this request saved them.
    latest: HashMap<(String, i64), Obj>,
    /// Per prefix being allocated from: its addresses in use.
    taken: HashMap<i64, HashSet<std::net::IpAddr>>,
}

/// Applies `req` inside the caller's transaction; on error the caller rolls back.
pub async fn apply(catalog: &Catalog, tx: &mut dyn ObjectTx, req: &WriteRequest) -> Result<Written, WriteError> {
    let ty = catalog
        .get(&req.object_type)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("unknown object type {}", req.object_type)))?;
    let mut run = Run {
        catalog,
        tx,
        req,
        changes: Vec::new(),
        touched: Vec::new(),
        index: HashMap::new(),
        related: Related::new(),
        latest: HashMap::new(),
        taken: HashMap::new(),
    };
    // Per operation, the id of the object it leaves (all of the request's type).
    let mut results: Vec<Option<i64>> = Vec::with_capacity(req.ops.len());
    let mut errors: Vec<FieldErrors> = Vec::with_capacity(req.ops.len());
    let mut failed = false;
    for op in &req.ops {
        let outcome = match op {
            Op::Create(body) => run.create(ty, body).await.map(Some),
            Op::Update { id, body, partial } => run.update(ty, *id, body, *partial).await.map(Some),
            Op::Delete(id) => run.delete(ty, *id).await.map(|_| None),
            Op::CreateAvailableIp { prefix_id, body } => run.allocate(ty, *prefix_id, body).await.map(Some),
        };
        match outcome {
            Ok(done) => {
                results.push(done);
                errors.push(FieldErrors::default());
            }
            Err(Fail::Fields(e)) => {
                failed = true;
                results.push(None);
                errors.push(e);
            }
            Err(Fail::Missing(id)) if req.bulk => {
                failed = true;
                results.push(None);
                errors.push(FieldErrors::single(
                    "id",
                    format!("Object with ID {id} does not exist."),
                ));
            }
            Err(Fail::Missing(_)) => return Err(WriteError::NotFound),
            Err(Fail::Conflict(m)) => return Err(WriteError::Conflict(m)),
            Err(Fail::Store(e)) => return Err(WriteError::Store(e)),
        }
    }
    if failed {
        return Err(WriteError::Invalid(errors));
    }
    let views = run.final_views().await?;
    let type_name = ty.name();
    let result_views = results
        .iter()
        .map(|r| {
            r.and_then(|id| views.get(&(type_name.clone(), id)))
                .cloned()
                .unwrap_or(Value::Null)
        })
        .collect();
    let timestamp = netbox_timestamp(req.now);
    let events = run
        .touched
        .iter()
        .map(|t| Event {
            id: 0,
            kind: t.kind,
            timestamp: timestamp.clone(),
            object_type: t.ty.clone(),
            username: req.username.clone(),
            request_id: req.request_id.clone(),
            data: match t.kind {
                EventKind::Deleted => t.last_view.clone(),
                _ => views.get(&(t.ty.clone(), t.id)).cloned().unwrap_or(Value::Null),
            },
            snapshots: json!({"prechange": t.pre, "postchange": t.post}),
        })
        .collect();
    Ok(Written {
        views: result_views,
        events,
        changes: run.changes,
    })
}

impl Run<'_> {
    async fn create(&mut self, ty: &ObjectType, body: &Value) -> Result<i64, Fail> {
        let data = self.read_body(ty, body, None, false).await?;
        let id = self.tx.next_id(&ty.name()).await?;
        let obj = Obj {
            id,
            data,
            created: self.req.now,
            last_updated: self.req.now,
        };
        self.check_unique(ty, &obj).await?;
        self.store(ty, &obj, true).await?;
        let post = self.snapshot(ty, &obj).await?;
        self.record(ty, &obj, "create", Value::Null, post.clone()).await?;
        self.touch(ty, id, EventKind::Created, Value::Null, post, Value::Null);
        Ok(id)
    }

    /// Creates an address at the first free one of prefix `prefix_id`; `body` gives the rest.
    async fn allocate(&mut self, ty: &ObjectType, prefix_id: i64, body: &Value) -> Result<i64, Fail> {
        let prefix = self
            .tx
            .get(ipam::PREFIX_TYPE, &[prefix_id])
            .await?
            .pop()
            .ok_or(Fail::Missing(prefix_id))?;
        let network = prefix
            .data
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !self.taken.contains_key(&prefix_id) {
            let hosts = self
                .tx
                .scan(ipam::ADDRESS_TYPE)
                .await?
                .iter()
                .filter_map(|o| o.data.get("address").and_then(Value::as_str).and_then(ipam::host))
                .filter(|h| ipam::contains(&network, *h))
                .collect();
            self.taken.insert(prefix_id, hosts);
        }
        let Some(address) = ipam::available(&network, &self.taken[&prefix_id], 1).pop() else {
            return Err(Fail::Conflict(format!(
                "No IP address is available within prefix {network}."
            )));
        };
        let mut fields = match body {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(Fail::Fields(FieldErrors::single(
                    "non_field_errors",
                    format!("Invalid data. Expected a dictionary, but got {}.", type_name(other)),
                )))
            }
        };
        fields.insert("address".into(), Value::from(address.as_str()));
        let id = self.create(ty, &Value::Object(fields)).await?;
        if let (Some(h), Some(set)) = (ipam::host(&address), self.taken.get_mut(&prefix_id)) {
            set.insert(h);
        }
        Ok(id)
    }

    async fn update(&mut self, ty: &ObjectType, id: i64, body: &Value, partial: bool) -> Result<i64, Fail> {
        let existing = self.tx.get(&ty.name(), &[id]).await?.pop().ok_or(Fail::Missing(id))?;
        let pre = self.snapshot(ty, &existing).await?;
        let data = self.read_body(ty, body, Some(&existing), partial).await?;
        let obj = Obj {
            id,
            data,
            created: existing.created,
            last_updated: self.req.now,
        };
        self.check_unique(ty, &obj).await?;
        self.store(ty, &obj, false).await?;
        let post = self.snapshot(ty, &obj).await?;
        self.record(ty, &obj, "update", pre.clone(), post.clone()).await?;
        self.touch(ty, id, EventKind::Updated, pre, post, Value::Null);
        Ok(id)
    }

    async fn delete(&mut self, ty: &ObjectType, id: i64) -> Result<(), Fail> {
        let name = ty.name();
        if self.tx.get(&name, &[id]).await?.is_empty() {
            // Already gone with something this request deleted (a bulk delete naming a parent
            // and its child): nothing more to do, as NetBox's bulk delete does.
            let key = (name, id);
            if self
                .index
                .get(&key)
                .is_some_and(|&i| self.touched[i].kind == EventKind::Deleted)
            {
                return Ok(());
            }
            return Err(Fail::Missing(id));
        }
        // Everything that goes with it (dependents first), and what refuses or unlinks.
        let mut doomed: Vec<(String, i64)> = Vec::new();
        let mut visited: HashSet<(String, i64)> = HashSet::new();
        let mut protecting = Vec::new();
        let mut unlink = Vec::new();
        let mut stack = vec![(name.clone(), id, false)];
        while let Some((t, i, expanded)) = stack.pop() {
            if expanded {
                doomed.push((t, i));
                continue;
            }
            if !visited.insert((t.clone(), i)) {
                continue;
            }
            stack.push((t.clone(), i, true));
            for r in self.tx.referrers(&t, i).await? {
                let rule = if r.field == "tags" {
                    OnDelete::SetNull
                } else {
                    self.catalog
                        .get(&r.object_type)
                        .and_then(|rt| rt.field(&r.field))
                        .and_then(|f| f.on_delete)
                        .unwrap_or(OnDelete::Protect)
                };
                match rule {
                    OnDelete::Cascade => stack.push((r.object_type, r.id, false)),
                    OnDelete::Protect => protecting.push(r),
                    OnDelete::SetNull => unlink.push(r),
                }
            }
        }
        protecting.retain(|r| !visited.contains(&(r.object_type.clone(), r.id)));
        if !protecting.is_empty() {
            let mut names = Vec::new();
            for r in protecting.iter().take(20) {
                let rt = self.catalog.get(&r.object_type);
                let shown = match (rt, self.tx.get(&r.object_type, &[r.id]).await?.pop()) {
                    (Some(rt), Some(o)) => {
                        format!("{} {} (id {})", rt.verbose_name, self.display_of(rt, &o).await?, r.id)
                    }
                    _ => format!("{} {}", r.object_type, r.id),
                };
                names.push(shown);
            }
            return Err(Fail::Conflict(format!(
                "Unable to delete object. {} dependent objects were found: {}",
                protecting.len(),
                names.join(", ")
            )));
        }
        // Views and snapshots first: dependents' views name what they belong to.
        let mut gone = Vec::with_capacity(doomed.len());
        for (t, i) in &doomed {
            let Some(dt) = self.catalog.get(t) else { continue };
            let Some(obj) = self.tx.get(t, &[*i]).await?.pop() else {
                continue;
            };
            let mut related = self.fresh_related();
            load_related(self.catalog, &mut TxLoader(&mut *self.tx), dt, &[&obj], &mut related).await?;
            let shown = view::view(self.catalog, dt, &obj, &related, false);
            let pre = view::snapshot(dt, &obj, &related);
            self.related = related;
            gone.push((dt, obj, shown, pre));
        }
        unlink.retain(|r| !visited.contains(&(r.object_type.clone(), r.id)));
        for r in unlink {
            let Some(rt) = self.catalog.get(&r.object_type) else {
                continue;
            };
            let Some(mut obj) = self.tx.get(&r.object_type, &[r.id]).await?.pop() else {
                continue;
            };
            if r.field == "tags" {
                let ids: Vec<i64> = obj
                    .tag_ids()
                    .into_iter()
                    .filter(|i| !visited.contains(&(TAG_TYPE.to_string(), *i)))
                    .collect();
                obj.data.insert("tags".into(), json!(ids));
            } else {
                obj.data.insert(r.field.clone(), Value::Null);
            }
            self.store(rt, &obj, false).await?;
        }
        for (dt, obj, shown, pre) in gone {
            self.tx.remove(&dt.name(), obj.id).await?;
            self.latest.remove(&(dt.name(), obj.id));
            self.record(dt, &obj, "delete", pre.clone(), Value::Null).await?;
            self.touch(dt, obj.id, EventKind::Deleted, pre, Value::Null, shown);
        }
        Ok(())
    }

    /// Reads a body into stored fields, over `existing` for updates.
    async fn read_body(
        &mut self,
        ty: &ObjectType,
        body: &Value,
        existing: Option<&Obj>,
        partial: bool,
    ) -> Result<Map<String, Value>, Fail> {
        let Value::Object(input) = body else {
            return Err(Fail::Fields(FieldErrors::single(
                "non_field_errors",
                format!("Invalid data. Expected a dictionary, but got {}.", type_name(body)),
            )));
        };
        let mut data = existing.map(|o| o.data.clone()).unwrap_or_default();
        let mut errors = FieldErrors::default();
        for f in ty.fields.iter().filter(|f| f.writable()) {
            match input.get(&f.name) {
                None => {
                    if f.required && !(partial && existing.is_some()) {
                        errors.add(&f.name, "This field is required.");
                    } else if existing.is_none() {
                        data.insert(f.name.clone(), f.default_value());
                    }
                }
                Some(v) if f.kind == FieldKind::Fk => {
                    let to = f.to.as_deref().unwrap_or_default();
                    match self.resolve(to, v, f.null).await? {
                        Ok(id) => {
                            data.insert(f.name.clone(), id.map(Value::from).unwrap_or(Value::Null));
                        }
                        Err(m) => errors.add(&f.name, m),
                    }
                }
                Some(v) => match clean(self.catalog, f, v) {
                    Ok(clean) => {
                        data.insert(f.name.clone(), clean);
                    }
                    Err(m) => errors.add(&f.name, m),
                },
            }
        }
        if ty.tags {
            match input.get("tags") {
                Some(v) => match self.resolve_tags(v).await? {
                    Ok(ids) => {
                        data.insert("tags".into(), json!(ids));
                    }
                    Err(m) => errors.add("tags", m),
                },
                None if existing.is_none() => {
                    data.insert("tags".into(), json!([]));
                }
                None => {}
            }
            match input.get("custom_fields") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for k in m.keys() {
                        errors.add(
                            "custom_fields",
                            format!("Unknown field name '{k}' in custom field data."),
                        );
                    }
                }
                Some(other) => errors.add(
                    "custom_fields",
                    format!("Invalid data. Expected a dictionary, but got {}.", type_name(other)),
                ),
            }
        }
        if let Some(existing) = existing {
            for f in ty.fields.iter().filter(|f| f.tree) {
                let mut parent = data.get(&f.name).and_then(Value::as_i64);
                let mut hops = 0;
                while let Some(p) = parent {
                    if p == existing.id {
                        errors.add(
                            &f.name,
                            format!("Cannot assign self or child {} as parent.", ty.verbose_name),
                        );
                        break;
                    }
                    hops += 1;
                    if hops > 256 {
                        break;
                    }
                    parent = self
                        .tx
                        .get(&ty.name(), &[p])
                        .await?
                        .pop()
                        .and_then(|o| o.data.get(&f.name).and_then(Value::as_i64));
                }
            }
        }
        if errors.is_empty() {
            Ok(data)
        } else {
            Err(Fail::Fields(errors))
        }
    }

    /// A foreign key given as an id, `{"id": ...}` or a dictionary of attributes.
    async fn resolve(
        &mut self,
        to: &str,
        v: &Value,
        nullable: bool,
    ) -> Result<Result<Option<i64>, String>, StoreError> {
        if v.is_null() {
            return Ok(if nullable {
                Ok(None)
            } else {
                Err("This field may not be null.".into())
            });
        }
        let id = match v {
            Value::Object(o) => match o.get("id") {
                Some(id) => as_integer(id),
                None => return self.resolve_attrs(to, o).await.map(|r| r.map(Some)),
            },
            Value::Array(_) | Value::Bool(_) => None,
            other => as_integer(other),
        };
        let Some(id) = id else {
            return Ok(Err(format!(
                "Related objects must be referenced by numeric ID or by dictionary of attributes. Received an unrecognized value: {v}"
            )));
        };
        let key = (to.to_string(), id);
        if !self.related.contains_key(&key) || self.index.contains_key(&key) {
            match self.tx.get(to, &[id]).await?.pop() {
                Some(obj) => {
                    self.related.insert(key, obj);
                }
                None => {
                    return Ok(Err(format!(
                        "Related object not found using the provided numeric ID: {id}"
                    )))
                }
            }
        }
        Ok(Ok(Some(id)))
    }

    async fn resolve_attrs(&mut self, to: &str, attrs: &Map<String, Value>) -> Result<Result<i64, String>, StoreError> {
        let target = self.catalog.get(to);
        let shown = Value::Object(attrs.clone()).to_string();
        let known = |k: &str| target.is_some_and(|t| t.field(k).is_some_and(|f| f.writable()));
        if attrs.is_empty() || attrs.keys().any(|k| !known(k)) {
            return Ok(Err(format!(
                "Related object not found using the provided attributes: {shown}"
            )));
        }
        // Attributes that make up a unique rule are one index lookup.
        let rule = target.and_then(|t| {
            t.unique
                .iter()
                .find(|r| r.len() == attrs.len() && r.iter().all(|f| attrs.contains_key(f)))
        });
        if let Some(rule) = rule {
            let values: Vec<Value> = rule.iter().map(|f| attrs[f].clone()).collect();
            let owner = self
                .tx
                .key_owner(to, &rule.join(","), &Value::from(values).to_string())
                .await?;
            return Ok(owner.ok_or_else(|| format!("Related object not found using the provided attributes: {shown}")));
        }
        let pairs: Vec<(String, Value)> = attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let found = self.tx.find(to, &pairs, 2).await?;
        Ok(match found.as_slice() {
            [id] => Ok(*id),
            [] => Err(format!(
                "Related object not found using the provided attributes: {shown}"
            )),
            _ => Err(format!("Multiple objects match the provided attributes: {shown}")),
        })
    }

    async fn resolve_tags(&mut self, v: &Value) -> Result<Result<Vec<i64>, String>, StoreError> {
        let Value::Array(items) = v else {
            return Ok(Err(format!(
                "Expected a list of items but got type \"{}\".",
                type_name(v)
            )));
        };
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            match self.resolve(TAG_TYPE, item, false).await? {
                Ok(Some(id)) => ids.push(id),
                Ok(None) => {}
                Err(m) => return Ok(Err(m)),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(Ok(ids))
    }

    /// Unique rules as `(rule, value)` keys; rules with a null in them do not apply.
    fn keys(ty: &ObjectType, obj: &Obj) -> Vec<(String, String)> {
        ty.unique
            .iter()
            .filter_map(|rule| {
                let values: Vec<&Value> = rule.iter().map(|f| obj.data.get(f).unwrap_or(&Value::Null)).collect();
                if values.iter().any(|v| v.is_null()) {
                    return None;
                }
                Some((
                    rule.join(","),
                    Value::from(values.into_iter().cloned().collect::<Vec<_>>()).to_string(),
                ))
            })
            .collect()
    }

    async fn check_unique(&mut self, ty: &ObjectType, obj: &Obj) -> Result<(), Fail> {
        let mut errors = FieldErrors::default();
        for (rule, value) in Self::keys(ty, obj) {
            let owner = self.tx.key_owner(&ty.name(), &rule, &value).await?;
            if owner.is_some_and(|o| o != obj.id) {
                match rule.split_once(',') {
                    None => errors.add(&rule, format!("{} with this {rule} already exists.", ty.verbose_name)),
                    Some(_) => errors.add(
                        "non_field_errors",
                        format!("The fields {} must make a unique set.", rule.replace(',', ", ")),
                    ),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Fail::Fields(errors))
        }
    }

    async fn store(&mut self, ty: &ObjectType, obj: &Obj, new: bool) -> Result<(), StoreError> {
        let mut refs = Vec::new();
        for f in ty.fields.iter().filter(|f| f.kind == FieldKind::Fk) {
            if let (Some(to), Some(id)) = (&f.to, obj.data.get(&f.name).and_then(Value::as_i64)) {
                refs.push(Ref {
                    field: f.name.clone(),
                    target_type: to.clone(),
                    target_id: id,
                });
            }
        }
        if ty.tags {
            for id in obj.tag_ids() {
                refs.push(Ref {
                    field: "tags".into(),
                    target_type: TAG_TYPE.into(),
                    target_id: id,
                });
            }
        }
        self.tx.save(&ty.name(), obj, &Self::keys(ty, obj), &refs, new).await?;
        self.latest.insert((ty.name(), obj.id), obj.clone());
        Ok(())
    }

    /// The minimal form, with tag names loaded as needed.
    async fn snapshot(&mut self, ty: &ObjectType, obj: &Obj) -> Result<Value, StoreError> {
        let missing: Vec<i64> = obj
            .tag_ids()
            .into_iter()
            .filter(|id| !self.related.contains_key(&(TAG_TYPE.to_string(), *id)))
            .collect();
        if !missing.is_empty() {
            for tag in self.tx.get(TAG_TYPE, &missing).await? {
                self.related.insert((TAG_TYPE.to_string(), tag.id), tag);
            }
        }
        Ok(view::snapshot(ty, obj, &self.related))
    }

    /// How `obj` is named, with what its display formats follow loaded.
    async fn display_of(&mut self, ty: &ObjectType, obj: &Obj) -> Result<String, StoreError> {
        // Related objects are loaded only when a format that follows foreign keys is used.
        let primary_follows = ty.display.contains('.');
        if !primary_follows {
            if let Some(primary) = view::primary_display(self.catalog, ty, obj, &self.related) {
                return Ok(primary);
            }
        }
        if !ty.display_fks().is_empty() {
            let mut related = self.fresh_related();
            load_related(self.catalog, &mut TxLoader(&mut *self.tx), ty, &[obj], &mut related).await?;
            self.related = related;
        }
        Ok(view::display(self.catalog, ty, obj, &self.related))
    }

    async fn record(
        &mut self,
        ty: &ObjectType,
        obj: &Obj,
        action: &str,
        pre: Value,
        post: Value,
    ) -> Result<(), StoreError> {
        let object_repr = self.display_of(ty, obj).await?;
        self.changes.push(Change {
            id: 0,
            time: self.req.now,
            user_id: self.req.user_id,
            user_name: self.req.username.clone(),
            request_id: self.req.request_id.clone(),
            action: action.into(),
            object_type: ty.name(),
            object_id: obj.id,
            object_repr,
            prechange_data: pre,
            postchange_data: post,
        });
        Ok(())
    }

    /// One event per object per request: created then updated stays created, anything then
    /// deleted is deleted; the first prechange and the last postchange are kept.
    fn touch(&mut self, ty: &ObjectType, id: i64, kind: EventKind, pre: Value, post: Value, last_view: Value) {
        let key = (ty.name(), id);
        if let Some(&i) = self.index.get(&key) {
            let t = &mut self.touched[i];
            t.post = post;
            t.last_view = last_view;
            if kind == EventKind::Deleted {
                t.kind = EventKind::Deleted;
            }
            return;
        }
        self.index.insert(key, self.touched.len());
        self.touched.push(Touch {
            ty: ty.name(),
            id,
            kind,
            pre,
            post,
            last_view,
        });
    }

    /// The loaded objects, less those this request has changed since they were loaded.
    fn fresh_related(&mut self) -> Related {
        let mut related = std::mem::take(&mut self.related);
        related.retain(|k, _| !self.index.contains_key(k));
        related
    }

    /// REST views of every object the request created or updated, as it leaves them.
    async fn final_views(&mut self) -> Result<HashMap<(String, i64), Value>, StoreError> {
        let mut by_type: Vec<(String, Vec<i64>)> = Vec::new();
        for t in self.touched.iter().filter(|t| t.kind != EventKind::Deleted) {
            match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
                Some((_, ids)) => ids.push(t.id),
                None => by_type.push((t.ty.clone(), vec![t.id])),
            }
        }
        let mut views = HashMap::new();
        for (name, ids) in by_type {
            let Some(ty) = self.catalog.get(&name) else { continue };
            let mut related = self.fresh_related();
            // The saved objects are borrowed from `latest`, not copied.
            let objs: Vec<&Obj> = ids
                .iter()
                .filter_map(|id| self.latest.get(&(name.clone(), *id)))
                .collect();
            load_related(self.catalog, &mut TxLoader(&mut *self.tx), ty, &objs, &mut related).await?;
            for obj in objs {
                views.insert(
                    (name.clone(), obj.id),
                    view::view(self.catalog, ty, obj, &related, false),
                );
            }
            self.related = related;
        }
        Ok(views)
    }
}
