//! How errors answer over HTTP: NetBox's status codes and bodies (`{"field": ["message"]}`
//! for validation, `{"detail": "..."}` otherwise). Server errors are logged, never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The one error every handler returns.
pub use crate::error::Error as ApiError;

/// The status code of an error.
pub fn status_code(e: &ApiError) -> StatusCode {
    match e {
        ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::Unauthenticated | ApiError::InvalidToken | ApiError::Forbidden | ApiError::BadCredentials => {
            StatusCode::FORBIDDEN
        }
        ApiError::NotFound => StatusCode::NOT_FOUND,
        ApiError::Conflict(_) => StatusCode::CONFLICT,
        ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::UriTooLong => StatusCode::URI_TOO_LONG,
        ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        ApiError::Unavailable(_) | ApiError::DatabaseLost(_) => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn body(e: &ApiError) -> Value {
    match e {
        ApiError::Validation(v) => v.clone(),
        ApiError::BadRequest(m) | ApiError::Conflict(m) | ApiError::TooLarge(m) | ApiError::DatabaseLost(m) => {
            json!({ "detail": m })
        }
        ApiError::UriTooLong => json!({"detail": "Request URI too long."}),
        ApiError::MethodNotAllowed => json!({"detail": "Method not allowed."}),
        ApiError::Throttled(secs) => {
            json!({"detail": format!("Request was throttled. Expected available in {secs} seconds.")})
        }
        ApiError::Unauthenticated => json!({"detail": "Authentication credentials were not provided."}),
        ApiError::InvalidToken => json!({"detail": "Invalid token"}),
        ApiError::Forbidden => json!({"detail": "You do not have permission to perform this action."}),
        ApiError::BadCredentials => json!({"detail": "Invalid username/password"}),
        ApiError::NotFound => json!({"detail": "Not found."}),
        ApiError::Unavailable(_) => json!({"detail": "The database is busy; try again shortly."}),
        ApiError::Internal(_) => json!({"detail": "Internal server error: see Herald's log."}),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            ApiError::Unavailable(m) => tracing::warn!(reason = %m, "answered 503"),
            ApiError::DatabaseLost(m) => tracing::error!(reason = %m, "answered 503"),
            _ => {}
        }
        let mut resp = (status_code(&self), Json(body(&self))).into_response();
        let retry_after = match &self {
            ApiError::Throttled(secs) => Some(*secs),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
