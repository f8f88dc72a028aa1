//! The rules of object writes, over any backend's `ObjectTx`: validation, foreign keys,
//! uniqueness, PROTECT / CASCADE / SET_NULL, change records, and one event per object per
//! request (NetBox's coalescing). `body` reads request bodies; `delete` plans deletes.

mod body;
mod delete;

use super::view::{self, load_related, Related, TAG_TYPE};
use super::{ipam, Obj, ObjectTx, Ref, TxLoader};
use crate::catalog::{Catalog, FieldKind, ObjectType};
use crate::changes::{Change, ChangeAction};
use crate::error::{StoreError, WriteError};
use crate::events::{netbox_timestamp, Event, EventKind};
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

/// Why one operation failed.
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

/// Why a value given for a field was not taken.
enum Reject {
    /// The message for the field.
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for Reject {
    fn from(e: StoreError) -> Reject {
        Reject::Store(e)
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

/// One request being applied.
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
    let results = run.apply_ops(ty).await?;
    run.finish(ty, &results).await
}

impl Run<'_> {
    /// Runs every operation; per operation, the id of the object it leaves. Field errors of
    /// all operations are gathered before failing.
    async fn apply_ops(&mut self, ty: &ObjectType) -> Result<Vec<Option<i64>>, WriteError> {
        let req = self.req;
        let mut results = Vec::with_capacity(req.ops.len());
        let mut errors = Vec::with_capacity(req.ops.len());
        let mut failed = false;
        for op in &req.ops {
            let outcome = match op {
                Op::Create(body) => self.create(ty, body).await.map(Some),
                Op::Update { id, body, partial } => self.update(ty, *id, body, *partial).await.map(Some),
                Op::Delete(id) => self.delete(ty, *id).await.map(|_| None),
                Op::CreateAvailableIp { prefix_id, body } => self.allocate(ty, *prefix_id, body).await.map(Some),
            };
            let error = match outcome {
                Ok(done) => {
                    results.push(done);
                    FieldErrors::default()
                }
                Err(Fail::Fields(e)) => e,
                Err(Fail::Missing(id)) if req.bulk => {
                    FieldErrors::single("id", format!("Object with ID {id} does not exist."))
                }
                Err(Fail::Missing(_)) => return Err(WriteError::NotFound),
                Err(Fail::Conflict(m)) => return Err(WriteError::Conflict(m)),
                Err(Fail::Store(e)) => return Err(WriteError::Store(e)),
            };
            if !error.is_empty() {
                failed = true;
                results.push(None);
            }
            errors.push(error);
        }
        if failed {
            return Err(WriteError::Invalid { errors, bulk: req.bulk });
        }
        Ok(results)
    }

    /// The views the request answers with, and one event per object touched.
    async fn finish(mut self, ty: &ObjectType, results: &[Option<i64>]) -> Result<Written, WriteError> {
        let views = self.final_views().await?;
        let result_views = results
            .iter()
            .map(|r| {
                r.and_then(|id| views.get(&(ty.name().to_string(), id)))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        let timestamp = netbox_timestamp(self.req.now);
        let events = self
            .touched
            .iter()
            .map(|t| Event {
                id: 0,
                kind: t.kind,
                timestamp: timestamp.clone(),
                object_type: t.ty.clone(),
                username: self.req.username.clone(),
                request_id: self.req.request_id.clone(),
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
            changes: self.changes,
        })
    }

    async fn create(&mut self, ty: &ObjectType, body: &Value) -> Result<i64, Fail> {
        let data = self.read_body(ty, body, None, false).await?;
        let id = self.tx.next_id(ty.name()).await?;
        let obj = Obj {
            id,
            data,
            created: self.req.now,
            last_updated: self.req.now,
        };
        self.check_unique(ty, &obj).await?;
        self.store(ty, &obj, true).await?;
        let post = self.snapshot(ty, &obj).await?;
        self.record(ty, &obj, ChangeAction::Create, Value::Null, post.clone())
            .await?;
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
            let addresses = self.tx.scan(ipam::ADDRESS_TYPE).await?;
            self.taken.insert(prefix_id, ipam::taken_in(&network, &addresses));
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
        let existing = self.tx.get(ty.name(), &[id]).await?.pop().ok_or(Fail::Missing(id))?;
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
        self.record(ty, &obj, ChangeAction::Update, pre.clone(), post.clone())
            .await?;
        self.touch(ty, id, EventKind::Updated, pre, post, Value::Null);
        Ok(id)
    }

    /// Saves `obj` with its unique keys and references.
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
        self.tx.save(ty.name(), obj, &Self::keys(ty, obj), &refs, new).await?;
        self.latest.insert((ty.name().to_string(), obj.id), obj.clone());
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
        action: ChangeAction,
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
            action,
            object_type: ty.name().to_string(),
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
        let key = (ty.name().to_string(), id);
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
            ty: ty.name().to_string(),
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
