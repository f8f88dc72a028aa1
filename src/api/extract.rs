//! Extractors: the token's user, JSON bodies with NetBox's errors, and list queries.

use super::json::{self, BodyError, Bounds};
use super::{ApiError, AppState};
use crate::auth::Actor;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, Method};
use serde_json::{json, Value};

/// The authenticated caller. Writes need a token with write permission.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The token's user and what they may do.
    pub actor: Actor,
    pub write_enabled: bool,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthenticated)?;
        let (scheme, key) = value.trim().split_once(' ').ok_or(ApiError::InvalidToken)?;
        if !(scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer")) {
            return Err(ApiError::InvalidToken);
        }
        let (token, actor) = state.svc.authenticate(key).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && !token.write_enabled {
            return Err(ApiError::Forbidden);
        }
        Ok(Auth {
            actor,
            write_enabled: token.write_enabled,
        })
    }
}

/// A JSON body within the configured bounds; malformed JSON is a 400 saying where, a body
/// over a bound a 413. An empty body reads as `null`.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<JsonBody, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Null));
        }
        parse_json(&bytes, state).map(JsonBody)
    }
}

/// The raw body, within the size bound (413 past it).
pub async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "The request body is larger than {} bytes.",
                state.svc.config.api.max_body_bytes
            ))
        } else {
            ApiError::BadRequest(format!("Could not read the request body: {e}"))
        }
    })
}

/// `bytes` as JSON within the configured bounds.
pub fn parse_json(bytes: &[u8], state: &AppState) -> Result<Value, ApiError> {
    let api = &state.svc.config.api;
    let bounds = Bounds {
        values: api.max_json_values,
        items: api.max_bulk_items,
    };
    json::parse(bytes, bounds).map_err(|e| match e {
        BodyError::Syntax(_) => ApiError::BadRequest(e.to_string()),
        BodyError::TooManyItems(_) | BodyError::TooManyValues(_) => ApiError::TooLarge(e.to_string()),
    })
}

/// The `{id}` of a detail path: digits only (no sign, no spaces). Anything else is a 404, as
/// for a missing object.
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathId, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        path_id(&id).map(PathId).ok_or(ApiError::NotFound)
    }
}

/// An id in a path: digits only (no sign, no spaces), within range.
pub fn path_id(id: &str) -> Option<i64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// A body that is one object or a non-empty list of them: the items, and whether it was a list.
pub fn one_or_many(body: Value) -> Result<(Vec<Value>, bool), ApiError> {
    match body {
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::BadRequest("Expected a non-empty list of objects.".into()))
        }
        Value::Array(items) => Ok((items, true)),
        Value::Null => Err(ApiError::BadRequest("A JSON body is required.".into())),
        other => Ok((vec![other], false)),
    }
}

/// The answer to a body read by `one_or_many`: the list, or the one object.
pub fn one_or_many_answer(mut items: Vec<Value>, many: bool) -> Value {
    if many {
        Value::Array(items)
    } else {
        items.pop().unwrap_or(Value::Null)
    }
}

/// The items and ids of a bulk update or delete body: a non-empty list of objects, each with
/// its integer `id` (an item without one, or with a bad one, is a per-item error).
pub fn bulk_ids(body: Value) -> Result<(Vec<Value>, Vec<i64>), ApiError> {
    let items = match body {
        Value::Array(items) if !items.is_empty() => items,
        _ => {
            return Err(ApiError::BadRequest(
                "Expected a non-empty list of objects with an \"id\" each.".into(),
            ))
        }
    };
    let mut ids = Vec::with_capacity(items.len());
    let mut errors = Vec::with_capacity(items.len());
    for item in &items {
        let given = match item {
            Value::Object(o) => o.get("id"),
            other => Some(other),
        };
        match given.map(crate::objects::values::as_integer) {
            Some(Some(id)) => {
                ids.push(id);
                errors.push(json!({}));
            }
            Some(None) => errors.push(json!({"id": ["A valid integer is required."]})),
            None => errors.push(json!({"id": ["This field is required."]})),
        }
    }
    if ids.len() < items.len() {
        return Err(ApiError::Validation(Value::Array(errors)));
    }
    Ok((items, ids))
}

/// `scheme://host` of the request, for the absolute `url`s NetBox's REST responses carry
/// (webhook payloads keep them relative, as NetBox's do).
pub struct Base(pub String);

/// `scheme://host` from `Host` (and `X-Forwarded-Proto`), or `http://localhost`.
fn base_of(parts: &Parts) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)))
        .unwrap_or("localhost");
    let scheme = match parts.headers.get("X-Forwarded-Proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Base, ApiError> {
        Ok(Base(base_of(parts)))
    }
}

/// NetBox's default and largest page sizes.
pub const PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// What a list's query string holds besides its filters.
pub const PAGING: [&str; 4] = ["limit", "offset", "brief", "format"];

pub struct ListQuery {
    pub params: Vec<(String, String)>,
    /// `scheme://host`, for the results' `url`s.
    pub origin: String,
    base: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<ListQuery, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let origin = base_of(parts);
        let base = format!("{origin}{}", parts.uri.path());
        Ok(ListQuery { params, origin, base })
    }
}

impl ListQuery {
    /// Every value given for `name` (`?name=a&name=b`), comma lists split too.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from))
            .collect()
    }

    /// The text conditions on `field` with NetBox's lookups (`name`, `name__ic`, ...; see
    /// `TEXT_LOOKUPS`), one per parameter.
    pub fn text_filters(&self, field: &str) -> Vec<crate::service::TextFilter> {
        let mut out = Vec::new();
        for (k, v) in &self.params {
            let Some(rest) = k.strip_prefix(field) else {
                continue;
            };
            let Some(suffix) = rest.strip_prefix("__").or(rest.is_empty().then_some("")) else {
                continue;
            };
            if let Some((lookup, negate)) = crate::service::TextLookup::parse(suffix) {
                out.push(crate::service::TextFilter {
                    lookup,
                    negate,
                    values: vec![v.clone()],
                });
            }
        }
        out
    }

    /// The parameters, for a list's filter spec to read (paging is `PAGING`).
    pub fn given(&self) -> crate::service::filters::Given {
        crate::service::filters::Given::pairs(self.params.iter().cloned())
    }

    pub fn first(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A 400 naming the first parameter that is neither one of `filters` nor `limit`,
    /// `offset`, `brief` or `format`: a filter Herald does not implement must not answer
    /// every row, as if it had matched.
    /// `only` over owned names.
    pub fn only_names(&self, filters: &[String], what: &str) -> Result<(), ApiError> {
        self.only(&filters.iter().map(String::as_str).collect::<Vec<_>>(), what)
    }

    pub fn only(&self, filters: &[&str], what: &str) -> Result<(), ApiError> {
        let unknown = self
            .params
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| !filters.contains(k) && !PAGING.contains(k));
        match unknown {
            None => Ok(()),
            Some(k) => {
                let known = if filters.is_empty() {
                    "it has no filters".to_string()
                } else {
                    format!("its filters are {}", filters.join(", "))
                };
                Err(ApiError::field(
                    k,
                    format!("Herald does not filter {what} by \"{k}\"; nothing was listed ({known})."),
                ))
            }
        }
    }

    /// Integer values of `name`; a bad one is a 400 naming it.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>, ApiError> {
        self.all(name)
            .iter()
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::Validation(json!({ name: [format!("\"{v}\" is not a valid integer.")] })))
            })
            .collect()
    }

    /// `limit` and `offset`, NetBox's way: default 50, `limit=0` the largest page.
    pub fn page(&self) -> Result<(i64, i64), ApiError> {
        let num = |name: &str, default: i64| -> Result<i64, ApiError> {
            match self.first(name) {
                None | Some("") => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ApiError::Validation(json!({ name: ["A non-negative integer is required."] }))),
            }
        };
        let limit = match num("limit", PAGE_SIZE)? {
            0 => MAX_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        Ok((limit, num("offset", 0)?))
    }

    /// The page `limit` and `offset` select of `items` (a list read whole).
    pub fn window<T>(items: &[T], limit: i64, offset: i64) -> &[T] {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(items.len());
        let len = usize::try_from(limit).unwrap_or(usize::MAX);
        &items[start..start.saturating_add(len).min(items.len())]
    }

    /// The paginated body for `results`, the `offset`..`offset+limit` slice of `count`.
    pub fn paginated(&self, count: i64, limit: i64, offset: i64, results: Vec<Value>) -> Value {
        let link = |off: i64| {
            let mut pairs: Vec<(String, String)> = self
                .params
                .iter()
                .filter(|(k, _)| k != "limit" && k != "offset")
                .cloned()
                .collect();
            pairs.push(("limit".into(), limit.to_string()));
            if off > 0 {
                pairs.push(("offset".into(), off.to_string()));
            }
            let Ok(mut url) = reqwest::Url::parse(&self.base) else {
                return Value::Null;
            };
            url.query_pairs_mut().extend_pairs(pairs);
            Value::String(url.to_string())
        };
        let next = match offset.checked_add(limit) {
            Some(end) if end < count => link(end),
            _ => Value::Null,
        };
        let previous = if offset > 0 {
            link((offset - limit).max(0))
        } else {
            Value::Null
        };
        json!({"count": count, "next": next, "previous": previous, "results": results})
    }
}

#[cfg(test)]
mod tests {
    use super::ListQuery;

    #[test]
    fn windows_stay_inside_the_list() {
        let items = [1, 2, 3, 4, 5];
        assert_eq!(ListQuery::window(&items, 2, 0), [1, 2]);
        assert_eq!(ListQuery::window(&items, 2, 4), [5]);
        assert!(ListQuery::window(&items, 2, 9).is_empty());
        assert_eq!(ListQuery::window(&items, i64::MAX, 3), [4, 5]);
        assert!(ListQuery::window(&items, 0, 0).is_empty());
    }
}
