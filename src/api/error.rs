//! The one error type every handler returns.

use crate::store::StoreError;
use crate::validate::FieldErrors;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with NetBox's field errors (an object, or a list for bulk bodies).
    #[error("invalid input")]
    Validation(Value),
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication credentials were not provided")]
    Unauthenticated,
    #[error("invalid token")]
    InvalidToken,
    #[error("permission denied")]
    Forbidden,
    #[error("invalid username or password")]
    BadCredentials,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated | ApiError::InvalidToken | ApiError::Forbidden | ApiError::BadCredentials => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        match self {
            ApiError::Validation(v) => v.clone(),
            ApiError::BadRequest(m) | ApiError::Conflict(m) => json!({ "detail": m }),
            ApiError::Unauthenticated => json!({"detail": "Authentication credentials were not provided."}),
            ApiError::InvalidToken => json!({"detail": "Invalid token"}),
            ApiError::Forbidden => json!({"detail": "You do not have permission to perform this action."}),
            ApiError::BadCredentials => json!({"detail": "Invalid username/password"}),
            ApiError::NotFound => json!({"detail": "Not found."}),
            ApiError::Internal(_) => json!({"detail": "Internal server error: see Herald's log."}),
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> ApiError {
        ApiError::Validation(e.into_value())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            // Backends name the columns of the broken unique rule: "…: webhooks.name".
            StoreError::Conflict(msg) => {
                let field = msg.rsplit(['.', ' ']).next().unwrap_or("non_field_errors").to_string();
                ApiError::Validation(json!({ field.clone(): [format!("An object with this {field} already exists.")] }))
            }
            StoreError::Other(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "internal error");
        }
        (self.status_code(), Json(self.body())).into_response()
    }
}
