//! The inventory: object writes through the outbox (objects, changes, events and deliveries in
//! one transaction), and lists and details as NetBox's REST views.

use super::{require, Error, Result, Services};
use crate::auth::{Action, Actor};
use crate::catalog::ObjectType;
use crate::objects::engine::{Op, WriteRequest};
use crate::objects::query::{self, Col, ObjectQuery};
use crate::objects::view::{self, load_related, Related};
use crate::objects::{ipam, Obj, ReadLoader};
use crate::page::Page;
use chrono::Utc;
use serde_json::{json, Value};

/// The writes of one request, on objects of one type.
pub struct ObjectWrite {
    pub object_type: String,
    pub ops: Vec<Op>,
    /// The body was a list: errors are reported per item.
    pub bulk: bool,
    /// The API request's method and path, for the events' `request` (NetBox 4.6).
    pub origin: Option<(String, String)>,
}

impl Services {
    /// The type named `app_label.model`.
    pub fn object_type(&self, name: &str) -> Result<&ObjectType> {
        self.catalog.get(name).ok_or(Error::NotFound)
    }

    /// Runs one request's writes by `actor`; returns each operation's object as it is after
    /// the request (REST views with relative `url`s; null for deletes).
    pub async fn write_objects(&self, actor: &Actor, request_id: &str, w: ObjectWrite) -> Result<Vec<Value>> {
        self.object_type(&w.object_type)?;
        for op in &w.ops {
            let action = match op {
                Op::Create(_) | Op::CreateAvailableIp { .. } => Action::Add,
                Op::Update { .. } => Action::Change,
                Op::Delete(_) => Action::Delete,
            };
            require(actor, &w.object_type, action)?;
        }
        let actor = &actor.user;
        let req = WriteRequest {
            object_type: w.object_type,
            ops: w.ops,
            bulk: w.bulk,
            user_id: Some(actor.id),
            username: actor.username.clone(),
            request_id: request_id.to_string(),
            request: w.origin.map(
                |(method, path)| json!({"id": request_id, "method": method, "path": path, "user": actor.username}),
            ),
            now: Utc::now(),
        };
        let committed = self
            .outbox
            .write_objects(self.store.as_ref(), self.catalog.clone(), req)
            .await?;
        self.metrics.ingested("api", committed.written.events.len());
        Ok(committed.written.views)
    }

    /// One page of the objects of `ty` that NetBox's filters in `params` select, as REST views
    /// (brief ones when asked) with relative `url`s.
    pub async fn list_objects(
        &self,
        actor: &Actor,
        ty: &ObjectType,
        params: &[(String, String)],
        limit: i64,
        offset: i64,
        brief: bool,
    ) -> Result<Page<Value>> {
        require(actor, ty.name(), Action::View)?;
        let query = query::parse(&self.catalog, self.store.as_ref(), ty, params).await?;
        let page = self.store.list_objects(ty.name(), &query, limit, offset).await?;
        let views = self.object_views(ty, &page.items, brief).await?;
        Ok(Page::new(page.count, views))
    }

    /// One object's REST view.
    pub async fn object(&self, actor: &Actor, ty: &ObjectType, id: i64, brief: bool) -> Result<Value> {
        require(actor, ty.name(), Action::View)?;
        let objs = self.store.get_objects(ty.name(), &[id]).await?;
        self.object_views(ty, &objs, brief).await?.pop().ok_or(Error::NotFound)
    }

    /// REST views of `objs` (all of type `ty`), relative `url`s.
    pub async fn object_views(&self, ty: &ObjectType, objs: &[Obj], brief: bool) -> Result<Vec<Value>> {
        let mut related = Related::new();
        let refs: Vec<&Obj> = objs.iter().collect();
        load_related(
            &self.catalog,
            &mut ReadLoader(self.store.as_ref()),
            ty,
            &refs,
            &mut related,
        )
        .await?;
        Ok(objs
            .iter()
            .map(|o| view::view(&self.catalog, ty, o, &related, brief))
            .collect())
    }

    /// The first `limit` free addresses of prefix `prefix_id`, as NetBox lists them.
    pub async fn available_ips(&self, actor: &Actor, prefix_id: i64, limit: i64) -> Result<Vec<Value>> {
        require(actor, ipam::PREFIX_TYPE, Action::View)?;
        require(actor, ipam::ADDRESS_TYPE, Action::View)?;
        let prefix = self
            .store
            .get_objects(ipam::PREFIX_TYPE, &[prefix_id])
            .await?
            .pop()
            .ok_or(Error::NotFound)?;
        let network = prefix.data.get("prefix").and_then(Value::as_str).unwrap_or_default();
        let all = ObjectQuery {
            order: vec![(Col::Id, false)],
            ..Default::default()
        };
        let addresses = self
            .store
            .list_objects(ipam::ADDRESS_TYPE, &all, i64::MAX, 0)
            .await?
            .items;
        let taken = ipam::taken_in(network, &addresses);
        let limit = usize::try_from(limit).unwrap_or(0);
        Ok(ipam::available(network, &taken, limit)
            .into_iter()
            .map(|a| {
                let family = crate::objects::values::family(&a).unwrap_or(4);
                json!({"family": family, "address": a, "vrf": null})
            })
            .collect())
    }
}
