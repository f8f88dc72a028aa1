//! What a request leaves behind besides its objects: the objects saved with their keys and
//! references, the change records, one event per object (NetBox's coalescing), and the views
//! the request answers with.

use super::{Fail, Run, Touch};
use crate::catalog::{FieldKind, ObjectType};
use crate::changes::{Change, ChangeAction};
use crate::error::unique_errors;
use crate::error::StoreError;
use crate::events::EventKind;
use crate::objects::view::{self, load_related, Related, TAG_TYPE};
use crate::objects::{values, Net, Obj, Ref, TxLoader};
use serde_json::Value;
use std::collections::HashMap;

/// The network index's rows of `obj`: its address fields by host, its prefix fields whole.
fn nets(ty: &ObjectType, obj: &Obj) -> Vec<Net> {
    ty.fields
        .iter()
        .filter(|f| matches!(f.kind, FieldKind::Address | FieldKind::Prefix))
        .filter_map(|f| {
            let value = obj.data.get(&f.name).and_then(Value::as_str)?;
            let (lo, hi, len) = values::net_span(value, f.kind == FieldKind::Address)?;
            Some(Net {
                field: f.name.clone(),
                lo,
                hi,
                len,
            })
        })
        .collect()
}

impl Run<'_> {
    /// Saves `obj` with its unique keys and references.
    /// Saves `obj`; a unique key another request took meanwhile fails this one, as its check
    /// would have.
    pub(super) async fn store(&mut self, ty: &ObjectType, obj: &Obj, new: bool) -> Result<(), Fail> {
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
        if let Some(rule) = self.tx.save(ty.name(), obj, &Self::keys(ty, obj), &refs, new).await? {
            let fields: Vec<&str> = rule.split(',').collect();
            return Err(Fail::Fields(unique_errors(&ty.verbose_name, &fields)));
        }
        let nets = nets(ty, obj);
        if !nets.is_empty() {
            self.tx.set_nets(ty.name(), obj.id, &nets).await?;
        }
        self.latest.insert((ty.name().to_string(), obj.id), obj.clone());
        Ok(())
    }

    /// The minimal form, with tag names loaded as needed.
    pub(super) async fn snapshot(&mut self, ty: &ObjectType, obj: &Obj) -> Result<Value, StoreError> {
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
    pub(super) async fn display_of(&mut self, ty: &ObjectType, obj: &Obj) -> Result<String, StoreError> {
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

    pub(super) async fn record(
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
    pub(super) fn touch(
        &mut self,
        ty: &ObjectType,
        id: i64,
        kind: EventKind,
        pre: Value,
        post: Value,
        last_view: Value,
    ) {
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
    pub(super) fn fresh_related(&mut self) -> Related {
        let mut related = std::mem::take(&mut self.related);
        related.retain(|k, _| !self.index.contains_key(k));
        related
    }

    /// REST views of every object the request created or updated, as it leaves them.
    pub(super) async fn final_views(&mut self) -> Result<HashMap<(String, i64), Value>, StoreError> {
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
