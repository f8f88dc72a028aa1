//! The inventory's REST API: for every catalog type, NetBox's list and detail endpoints
//! (`/api/dcim/sites/`, `/api/dcim/sites/{id}/`) with bulk create, update and delete; and
//! `/api/extras/object-changes/`, the change log.

use super::{
    bulk_ids, one_or_many, one_or_many_answer, ApiError, AppState, Auth, JsonBody, ListQuery, PathId, RequestId, PAGING,
};
use crate::catalog::{label, Catalog, ObjectType};
use crate::changes::ChangeFilter;
use crate::objects::engine::Op;
use crate::objects::{absolutize, ipam};
use crate::service::ObjectWrite;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
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
                get(detail)
                    .put(update)
                    .patch(update)
                    .delete(delete)
                    .options(detail_options),
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
    st.svc.object_type(&name.0)
}

fn brief(q: &ListQuery) -> bool {
    q.first("brief").and_then(crate::validate::parse_bool).unwrap_or(false)
}

async fn list(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    auth: Auth,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let ty = object_type(&st, &name)?;
    let (limit, offset) = q.page()?;
    let page = st
        .svc
        .list_objects(&auth.actor, ty, &q.params, limit, offset, brief(&q))
        .await?;
    Ok(Json(q.paginated(
        page.count,
        limit,
        offset,
        absolute(page.items, &q.origin),
    )))
}

/// Views with absolute `url`s under `origin`, as NetBox's REST responses carry them.
fn absolute(mut views: Vec<Value>, origin: &str) -> Vec<Value> {
    for v in &mut views {
        absolutize(v, origin);
    }
    views
}

/// `GET /api/ipam/prefixes/{id}/available-ips/`: the first free addresses (`limit`, default 50).
async fn available_ips(
    State(st): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let (limit, _) = q.page()?;
    Ok(Json(Value::Array(st.svc.available_ips(&auth.actor, id, limit).await?)))
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
/// `OPTIONS` on a list: the fields a `POST` takes, in Django REST framework's metadata format
/// (what pynetbox's `choices()` reads).
async fn options(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    _auth: Auth,
) -> Result<Json<Value>, ApiError> {
    let ty = object_type(&st, &name)?;
    Ok(Json(super::metadata(
        &format!("{} List", label(&ty.verbose_name)),
        "POST",
        fields_metadata(&st, ty),
    )))
}

/// `OPTIONS` on one object: the fields a `PUT` takes.
async fn detail_options(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    _auth: Auth,
    PathId(_): PathId,
) -> Result<Json<Value>, ApiError> {
    let ty = object_type(&st, &name)?;
    Ok(Json(super::metadata(
        &format!("{} Instance", label(&ty.verbose_name)),
        "PUT",
        fields_metadata(&st, ty),
    )))
}

/// Each field of `ty` as Django REST framework's metadata describes it.
fn fields_metadata(st: &AppState, ty: &ObjectType) -> serde_json::Map<String, Value> {
    use crate::catalog::FieldKind;
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
            meta["choices"] = super::choices(st.svc.catalog.choices(set).iter().cloned());
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
    post
}

async fn detail(
    State(st): State<AppState>,
    Extension(name): Extension<TypeName>,
    auth: Auth,
    PathId(id): PathId,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let ty = object_type(&st, &name)?;
    let mut view = st.svc.object(&auth.actor, ty, id, brief(&q)).await?;
    absolutize(&mut view, &q.origin);
    Ok(Json(view))
}

/// What a write handler needs: the state, the type, the caller and the request's id.
struct Writer {
    st: AppState,
    name: TypeName,
    auth: Auth,
    request_id: RequestId,
    /// The request's method and path, for its events.
    origin: (String, String),
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
            origin: (parts.method.to_string(), parts.uri.path().to_string()),
        })
    }
}

impl Writer {
    /// Runs one request's operations; returns the objects as they are after it.
    async fn write(&self, ops: Vec<Op>, bulk: bool) -> Result<Vec<Value>, ApiError> {
        let write = ObjectWrite {
            object_type: self.name.0.to_string(),
            ops,
            bulk,
            origin: Some(self.origin.clone()),
        };
        self.st
            .svc
            .write_objects(&self.auth.actor, &self.request_id.0, write)
            .await
    }
}

fn answer(status: StatusCode, views: Vec<Value>, bulk: bool, origin: &str) -> Response {
    (status, Json(one_or_many_answer(absolute(views, origin), bulk))).into_response()
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

async fn list_changes(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let filter = crate::service::change_filter(&q.given(), &PAGING)?;
    let (limit, offset) = q.page()?;
    let page = st.svc.changes(&auth.actor, &filter, limit, offset).await?;
    Ok(Json(q.paginated(
        page.count,
        limit,
        offset,
        absolute(page.items, &q.origin),
    )))
}

async fn change_detail(
    State(st): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    q: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let filter = ChangeFilter {
        id: vec![id],
        ..Default::default()
    };
    let mut change = st
        .svc
        .changes(&auth.actor, &filter, 1, 0)
        .await?
        .items
        .pop()
        .ok_or(ApiError::NotFound)?;
    absolutize(&mut change, &q.origin);
    Ok(Json(change))
}
