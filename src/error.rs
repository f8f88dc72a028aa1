//! The errors that cross layers: what storage reports (`StoreError`), why a write transaction
//! wrote nothing (`WriteError`), and the one error the service layer hands to the REST API, the
//! CLI and the admin pages (`Error`). Each backend maps its own failures into `StoreError`;
//! `Error` is built from the others in one place (the `From` impls below).

use crate::validate::FieldErrors;
use serde_json::{json, Value};

/// A uniqueness rule broken in storage, named by its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// The kind of record (`webhook`, `user`, `token`): how NetBox words the message.
    pub record: &'static str,
    /// The fields that must be unique together.
    pub fields: &'static [&'static str],
}

impl Unique {
    pub const WEBHOOK_NAME: Unique = Unique {
        record: "webhook",
        fields: &["name"],
    };
    pub const EVENT_RULE_NAME: Unique = Unique {
        record: "event rule",
        fields: &["name"],
    };
    pub const USERNAME: Unique = Unique {
        record: "user",
        fields: &["username"],
    };
    pub const TOKEN_KEY: Unique = Unique {
        record: "token",
        fields: &["key"],
    };
    pub const GROUP_NAME: Unique = Unique {
        record: "group",
        fields: &["name"],
    };
    pub const PERMISSION_NAME: Unique = Unique {
        record: "permission",
        fields: &["name"],
    };

    /// NetBox's (Django REST framework's) message for it, keyed by the field it names.
    pub fn field_errors(&self) -> FieldErrors {
        unique_errors(self.record, self.fields)
    }
}

/// Django REST framework's message for a broken uniqueness rule of a `record` (`site`) over
/// `fields`: under the field when it is one, under `non_field_errors` when they are several.
pub fn unique_errors<S: AsRef<str>>(record: &str, fields: &[S]) -> FieldErrors {
    match fields {
        [one] => {
            let one = one.as_ref();
            FieldErrors::single(one, format!("{record} with this {one} already exists."))
        }
        many => {
            let names: Vec<&str> = many.iter().map(AsRef::as_ref).collect();
            FieldErrors::single(
                "non_field_errors",
                format!("The fields {} must make a unique set.", names.join(", ")),
            )
        }
    }
}

/// What can go wrong in storage, as callers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken.
    #[error("{} with these {} already exists", .0.record, .0.fields.join(", "))]
    Unique(Unique),
    /// A row refers to one that is gone (e.g. a delivery deleted while it was being sent).
    #[error("a referenced row is gone")]
    ForeignKey,
    /// The database cannot take the request now (no free connection in time); nothing was
    /// done, and the same request may succeed later.
    #[error("the database is busy: {0}")]
    Unavailable(String),
    /// The database this process opened is no longer where it was (its file deleted or
    /// replaced): nothing is written until an operator acts, and the message says what to do.
    #[error("{0}")]
    Lost(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Why a write transaction wrote nothing; everything it did was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Field errors: one map per operation (empty for those that were fine); `bulk` when the
    /// request body was a list, so errors are reported per item.
    #[error("invalid input")]
    Invalid { errors: Vec<FieldErrors>, bulk: bool },
    /// The one object a request named does not exist.
    #[error("not found")]
    NotFound,
    /// The request conflicts with what is stored: dependents protect an object from deletion,
    /// or a prefix has no free address left.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a request to Herald can fail with, whichever way it came in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Field errors in NetBox's shape: an object, or a list with one object per item of a
    /// list body.
    #[error("{}", describe_fields(.0))]
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
    /// A request body, list or URI over its bound.
    #[error("{0}")]
    TooLarge(String),
    #[error("the request URI is too long")]
    UriTooLong,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many attempts: try again after this many seconds.
    #[error("too many attempts; try again in {0} s")]
    Throttled(u64),
    /// The database is busy or unreachable: nothing was done; try again shortly.
    #[error("{0}")]
    Unavailable(String),
    /// The database is gone from under Herald: nothing was done, and retrying will not help.
    #[error("{0}")]
    DatabaseLost(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Field errors as one line: `name: This field is required.; url: ...`.
pub fn describe_fields(errors: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, v, out);
                }
            }
            Value::Array(items) if items.iter().all(Value::is_string) => {
                for m in items.iter().filter_map(Value::as_str) {
                    out.push(if prefix.is_empty() {
                        m.to_string()
                    } else {
                        format!("{prefix}: {m}")
                    });
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), item, out);
                }
            }
            Value::String(m) => out.push(format!("{prefix}: {m}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", errors, &mut out);
    if out.is_empty() {
        "invalid input".into()
    } else {
        out.join("; ")
    }
}

impl Error {
    /// A validation error on one field.
    pub fn field(name: &str, message: impl Into<String>) -> Error {
        Error::Validation(FieldErrors::single(name, message).into_value())
    }
}

impl From<FieldErrors> for Error {
    fn from(e: FieldErrors) -> Error {
        Error::Validation(e.into_value())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::NotFound => Error::NotFound,
            StoreError::Unique(u) => Error::Validation(u.field_errors().into_value()),
            StoreError::ForeignKey => Error::Conflict("A record this one refers to no longer exists.".into()),
            StoreError::Unavailable(m) => Error::Unavailable(m),
            StoreError::Lost(m) => Error::DatabaseLost(m),
            StoreError::Other(e) => Error::Internal(e),
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Error {
        match e {
            WriteError::Invalid { errors, bulk: true } => {
                Error::Validation(Value::Array(errors.into_iter().map(FieldErrors::into_value).collect()))
            }
            WriteError::Invalid {
                mut errors,
                bulk: false,
            } => Error::Validation(errors.pop().map(FieldErrors::into_value).unwrap_or_else(|| json!({}))),
            WriteError::NotFound => Error::NotFound,
            WriteError::Conflict(m) => Error::Conflict(m),
            WriteError::Store(e) => e.into(),
        }
    }
}

/// Adds which record a broken uniqueness rule was about, where a backend could only tell
/// that some rule broke (realworld's `on_constraint`).
pub trait StoreResultExt<T> {
    /// Maps a bare `Unique` from this call to `which`.
    fn on_unique(self, which: Unique) -> Result<T, StoreError>;
}

impl<T> StoreResultExt<T> for Result<T, StoreError> {
    fn on_unique(self, which: Unique) -> Result<T, StoreError> {
        self.map_err(|e| match e {
            StoreError::Unique(_) => StoreError::Unique(which),
            e => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_messages_name_their_fields() {
        let e: Error = StoreError::Unique(Unique::WEBHOOK_NAME).into();
        assert_eq!(e.to_string(), "name: webhook with this name already exists.");
        let Error::Validation(v) = e else {
            panic!("not a validation error")
        };
        assert_eq!(v, json!({"name": ["webhook with this name already exists."]}));
        let pair = Unique {
            record: "device type",
            fields: &["manufacturer", "model"],
        };
        assert_eq!(
            pair.field_errors().into_value(),
            json!({"non_field_errors": ["The fields manufacturer, model must make a unique set."]})
        );
        let bulk: Error = WriteError::Invalid {
            errors: vec![FieldErrors::default(), FieldErrors::single("name", "bad")],
            bulk: true,
        }
        .into();
        let Error::Validation(v) = bulk else {
            panic!("not a validation error")
        };
        assert_eq!(v, json!([{}, {"name": ["bad"]}]));
    }
}
