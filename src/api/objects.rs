//! The inventory's REST API: for every catalog type, NetBox's list and detail endpoints
//! (`/api/dcim/sites/`, `/api/dcim/sites/{id}/`) with bulk create, update and delete; and
//! `/api/extras/object-changes/`, the change log.

use super::{
    bulk_ids, one_or_many, one_or_many_answer, ApiError, AppState, Auth, JsonBody, ListQuery, PathId, RequestId,
};
use crate::catalog::{Catalog, ObjectType};
use crate::events::netbox_timestamp;
use crate::objects::engine::{Op, WriteError, WriteRequest};
use crate::objects::view::{self, load_related, Related};
use crate::objects::{absolutize, ipam, query, Change, ChangeFilter, Obj, StoreLoader};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

/// The object type a route serves.
#[derive(Clone)]
struct TypeName(Arc<str>);

/// Routes for every type of the catalog, and the change log.
pub fn router(catalog: &Catalog) -> Router<AppState> {
    let mut router = Router::new()
        .route("/api/extras/object-changes/", get(list_changes))
        .route("/api/extras/object-changes/{id}/", get(change_detail))
        .route("/api/core/object-changes/", get(list_changes))
        .route("/api/core/object-changes/{id}/", get(change_detail));
    for t in catalog.types() {
        let typed = Router::new()
            .route(
                &format!("/api/{}/", t.api_path),
                get(list)
                    .post(create)
                    .put(bulk_update)
                    .patch(bulk_update)
                    .delete(bulk_delete)
                    .options(options),
            )
            .route(
                &format!("/api/{}/{{id}}/", t.api_path),
                get(detail).put(update).patch(update).delete(delete),
            )
            .layer(Extension(TypeName(t.name().into())));
        router = router.merge(typed);
    }
    let ipam = [ipam::PREFIX_TYPE, ipam::ADDRESS_TYPE].map(|t| catalog.get(t));
    if let [Some(prefixes), Some(_)] = ipam {
        router = router.route(
            &format!("/api/{}/{{id}}/available-ips/", prefixes.api_path),
            get(available_ips)
                .post(allocate_ips)
                .layer(Extension(TypeName(ipam::ADDRESS_TYPE.into()))),
        );
    }
    router
}

fn object_type<'a>(st: &'a AppState, name: &TypeName) -> Result<&'a ObjectType, ApiError> {
    st.catalog.get(&name.0).ok_or(ApiError::NotFound)
}

/// REST views of `objs` with absolute `url`s under `origin`.
async fn views(
    st: &AppState,
    ty: &ObjectType,
    objs: &[Obj],
    brief: bool,
    origin: &str,
) -> Result<Vec<Value>, ApiError> {
    let mut related = Related::new();
    let refs: Vec<&Obj> = objs.iter().collect();
    load_related(
        &st.catalog,
        &mut StoreLoader(st.store.as_ref()),
        ty,
        &refs,
        &mut related,
    )
    .await?;
    Ok(objs
        .iter()
        .map(|o| {
            let mut v = view::view(&st.catalog, ty, o, &related, brief);
            absolutize(&mut v, origin);
            v
        })
        .collect())
}

async fn list(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    _auth: Auth,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let ty = object_type(&st, &name)?;
    let query = query::parse(&st.catalog, st.store.as_ref(), ty, &q.params).await?;
    let (limit, offset) = q.page()?;
    let brief = q.first("brief").and_then(crate::validate::parse_bool).unwrap_or(false);
    let (count, objs) = st.store.list_objects(&name.0, &query, limit, offset).await?;
    let results = views(&st, ty, &objs, brief, &q.origin).await?;
    Ok(Json(q.paginated(count, limit, offset, results)))
}

/// `GET /api/ipam/prefixes/{id}/available-ips/`: the first free addresses (`limit`, default 50).
async fn available_ips(
    State(st): State<AppState>,
    _auth: Auth,
    PathId(id): PathId,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let prefix = st
        .store
        .get_objects(ipam::PREFIX_TYPE, &[id])
        .await?
        .pop()
        .ok_or(ApiError::NotFound)?;
    let network = prefix.data.get("prefix").and_then(Value::as_str).unwrap_or_default();
    let (limit, _) = q.page()?;
    let all = query::ObjectQuery {
        order: vec![(query::Col::Id, false)],
        ..Default::default()
    };
    let (_, addresses) = st.store.list_objects(ipam::ADDRESS_TYPE, &all, i64::MAX, 0).await?;
    let taken = addresses
        .iter()
        .filter_map(|o| o.data.get("address").and_then(Value::as_str).and_then(ipam::host))
        .filter(|h| ipam::contains(network, *h))
        .collect();
    let free: Vec<Value> = ipam::available(network, &taken, limit as usize)
        .into_iter()
        .map(|a| {
            let family = crate::objects::values::family(&a).unwrap_or(4);
            json!({"family": family, "address": a, "vrf": null})
        })
        .collect();
    Ok(Json(Value::Array(free)))
}

/// `POST /api/ipam/prefixes/{id}/available-ips/`: creates addresses at the first free ones
/// (`{}` or a list of bodies with the other fields), in one request.
async fn allocate_ips(
    w: Writer,
    PathId(id): PathId,
    q: ListQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let prefix_id = id;
    let (bodies, bulk) = match body {
        Value::Null => (vec![json!({})], false),
        other => one_or_many(other)?,
    };
    let ops = bodies
        .into_iter()
        .map(|body| Op::CreateAvailableIp { prefix_id, body })
        .collect();
    let views = w.write(ops, bulk).await?;
    Ok(answer(StatusCode::CREATED, views, bulk, &q.origin))
}

/// A field's label, as Django derives it: `time_zone` → `Time zone`.
fn label(name: &str) -> String {
    let text = name.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// `OPTIONS` on a list: the fields a `POST` takes, in Django REST framework's metadata format
/// (what pynetbox's `choices()` reads).
async fn options(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    _auth: Auth,
) -> Result<Json<Value>, ApiError> {
    use crate::catalog::FieldKind;
    let ty = object_type(&st, &name)?;
    let mut post = serde_json::Map::new();
    let read_only =
        |kind: &str, label: &str| json!({"type": kind, "required": false, "read_only": true, "label": label});
    post.insert("id".into(), read_only("integer", "ID"));
    post.insert("url".into(), read_only("field", "Url"));
    post.insert("display".into(), read_only("field", "Display"));
    for f in &ty.fields {
        if !f.writable() {
            post.insert(f.name.clone(), read_only("field", &label(&f.name)));
            continue;
        }
        let kind = match f.kind {
            FieldKind::String | FieldKind::Prefix | FieldKind::Address | FieldKind::Mac => "string",
            FieldKind::Integer => "integer",
            FieldKind::Decimal => "decimal",
            FieldKind::Boolean => "boolean",
            FieldKind::Choice => "choice",
            FieldKind::Fk | FieldKind::Family => "field",
        };
        let mut meta = json!({"type": kind, "required": f.required, "read_only": false, "label": label(&f.name)});
        if let Some(max) = f.max_length {
            meta["max_length"] = json!(max);
        }
        if let Some(min) = f.min {
            meta["min_value"] = json!(min);
        }
        if let Some(max) = f.max {
            meta["max_value"] = json!(max);
        }
        if let Some(set) = &f.choices {
            let choices: Vec<Value> = st
                .catalog
                .choices(set)
                .iter()
                .map(|(v, l)| json!({"value": v, "display_name": l}))
                .collect();
            meta["choices"] = Value::Array(choices);
        }
        post.insert(f.name.clone(), meta);
    }
    if ty.tags {
        post.insert(
            "tags".into(),
            json!({"type": "field", "required": false, "read_only": false, "label": "Tags"}),
        );
        post.insert(
            "custom_fields".into(),
            json!({"type": "field", "required": false, "read_only": false, "label": "Custom fields"}),
        );
    }
    post.insert("created".into(), read_only("datetime", "Created"));
    post.insert("last_updated".into(), read_only("datetime", "Last updated"));
    Ok(Json(json!({
        "name": format!("{} List", label(&ty.verbose_name)),
        "description": "",
        "renders": ["application/json"],
        "parses": ["application/json"],
        "actions": {"POST": post},
    })))
}

async fn detail(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    _auth: Auth,
    PathId(id): PathId,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let ty = object_type(&st, &name)?;
    let objs = st.store.get_objects(&name.0, &[id]).await?;
    if objs.is_empty() {
        return Err(ApiError::NotFound);
    }
    let brief = q.first("brief").and_then(crate::validate::parse_bool).unwrap_or(false);
    Ok(Json(views(&st, ty, &objs, brief, &q.origin).await?.remove(0)))
}

/// What a write handler needs: the state, the type, the caller and the request's id.
struct Writer {
    st: AppState,
    name: TypeName,
    auth: Auth,
    request_id: RequestId,
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Writer, ApiError> {
        let auth = Auth::from_request_parts(parts, st).await?;
        let name = parts.extensions.get::<TypeName>().cloned().ok_or(ApiError::NotFound)?;
        object_type(st, &name)?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no request id")))?;
        Ok(Writer {
            st: st.clone(),
            name,
            auth,
            request_id,
        })
    }
}

impl Writer {
    /// Runs one request's operations; returns the objects as they are after it.
    async fn write(&self, ops: Vec<Op>, bulk: bool) -> Result<Vec<Value>, ApiError> {
        let req = WriteRequest {
            object_type: self.name.0.to_string(),
            ops,
            bulk,
            user_id: Some(self.auth.user.id),
            username: self.auth.user.username.clone(),
            request_id: self.request_id.0.clone(),
            now: Utc::now(),
        };
        match self.st.store.write_objects(self.st.catalog.clone(), req).await {
            Ok((written, queued)) => {
                if queued > 0 {
                    self.st.wake.notify_one();
                }
                Ok(written.views)
            }
            Err(WriteError::Invalid(mut errors)) => Err(ApiError::Validation(if bulk {
                Value::Array(errors.into_iter().map(|e| e.into_value()).collect())
            } else {
                errors.pop().map(|e| e.into_value()).unwrap_or(Value::Null)
            })),
            Err(WriteError::NotFound) => Err(ApiError::NotFound),
            Err(WriteError::Conflict(m)) => Err(ApiError::Conflict(m)),
            Err(WriteError::Store(e)) => Err(e.into()),
        }
    }
}

fn answer(status: StatusCode, mut views: Vec<Value>, bulk: bool, origin: &str) -> Response {
    for v in &mut views {
        absolutize(v, origin);
    }
    (status, Json(one_or_many_answer(views, bulk))).into_response()
}

async fn create(w: Writer, q: ListQuery, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let (items, bulk) = one_or_many(body)?;
    let ops = items.into_iter().map(Op::Create).collect();
    let views = w.write(ops, bulk).await?;
    Ok(answer(StatusCode::CREATED, views, bulk, &q.origin))
}

async fn update(
    w: Writer,
    method: Method,
    PathId(id): PathId,
    q: ListQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    if !body.is_object() {
        return Err(ApiError::Validation(
            json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}),
        ));
    }
    let op = Op::Update {
        id,
        body,
        partial: method == Method::PATCH,
    };
    let views = w.write(vec![op], false).await?;
    Ok(answer(StatusCode::OK, views, false, &q.origin))
}

async fn bulk_update(w: Writer, method: Method, q: ListQuery, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let (items, ids) = bulk_ids(body)?;
    let partial = method == Method::PATCH;
    let ops = ids
        .into_iter()
        .zip(items)
        .map(|(id, body)| Op::Update { id, body, partial })
        .collect();
    let views = w.write(ops, true).await?;
    Ok(answer(StatusCode::OK, views, true, &q.origin))
}

async fn delete(w: Writer, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    w.write(vec![Op::Delete(id)], false).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_delete(w: Writer, JsonBody(body): JsonBody) -> Result<StatusCode, ApiError> {
    let (_, ids) = bulk_ids(body)?;
    let ops = ids.into_iter().map(Op::Delete).collect();
    w.write(ops, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn action_label(action: &str) -> &'static str {
    match action {
        "create" => "Created",
        "update" => "Updated",
        "delete" => "Deleted",
        _ => "Unknown",
    }
}

fn change_json(c: &Change, changed_object: Value, origin: &str) -> Value {
    let user = match c.user_id {
        Some(id) => json!({
            "id": id,
            "url": format!("{origin}/api/users/users/{id}/"),
            "display": c.user_name,
            "username": c.user_name,
        }),
        None => Value::Null,
    };
    json!({
        "id": c.id,
        "url": format!("{origin}/api/extras/object-changes/{}/", c.id),
        "display": format!("{} {}", c.object_repr, action_label(&c.action).to_lowercase()),
        "time": netbox_timestamp(c.time),
        "user": user,
        "user_name": c.user_name,
        "request_id": c.request_id,
        "action": {"value": c.action, "label": action_label(&c.action)},
        "changed_object_type": c.object_type,
        "changed_object_id": c.object_id,
        "changed_object": changed_object,
        "object_repr": c.object_repr,
        "prechange_data": c.prechange_data,
        "postchange_data": c.postchange_data,
    })
}

/// The changes as JSON, each with its object's brief view while the object exists.
async fn changes_json(st: &AppState, changes: &[Change], origin: &str) -> Result<Vec<Value>, ApiError> {
    let mut by_type: Vec<(String, Vec<i64>)> = Vec::new();
    for c in changes {
        match by_type.iter_mut().find(|(t, _)| *t == c.object_type) {
            Some((_, ids)) => ids.push(c.object_id),
            None => by_type.push((c.object_type.clone(), vec![c.object_id])),
        }
    }
    let mut briefs = std::collections::HashMap::new();
    for (t, mut ids) in by_type {
        let Some(ty) = st.catalog.get(&t) else { continue };
        ids.sort_unstable();
        ids.dedup();
        let objs = st.store.get_objects(&t, &ids).await?;
        for (obj, v) in objs.iter().zip(views(st, ty, &objs, true, origin).await?) {
            briefs.insert((t.clone(), obj.id), v);
        }
    }
    Ok(changes
        .iter()
        .map(|c| {
            let brief = briefs.get(&(c.object_type.clone(), c.object_id)).cloned();
            change_json(c, brief.unwrap_or(Value::Null), origin)
        })
        .collect())
}

async fn list_changes(State(st): State<AppState>, _auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let filter = ChangeFilter {
        id: q.ints("id")?,
        request_id: q.all("request_id"),
        action: q.all("action"),
        object_type: q.all("changed_object_type"),
        object_id: q.ints("changed_object_id")?,
        user_id: q.ints("user_id")?,
        user_name: q.all("user_name"),
    };
    let (limit, offset) = q.page()?;
    let (count, changes) = st.store.object_changes(&filter, limit, offset).await?;
    let results = changes_json(&st, &changes, &q.origin).await?;
    Ok(Json(q.paginated(count, limit, offset, results)))
}

async fn change_detail(
    State(st): State<AppState>,
    _auth: Auth,
    PathId(id): PathId,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let (_, changes) = st
        .store
        .object_changes(
            &ChangeFilter {
                id: vec![id],
                ..Default::default()
            },
            1,
            0,
        )
        .await?;
    if changes.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(changes_json(&st, &changes, &q.origin).await?.remove(0)))
}
