//! Objects and the change log as rows.

use super::{invalid, Columns};
use crate::changes::{Change, ChangeAction};
use crate::objects::Obj;
use crate::store::sql::Arg;
use crate::store::Result;
use serde_json::Value;

pub const OBJECT_SELECT: &str = "select o.id, o.data, o.created_at, o.updated_at from objects o";

/// A row of `OBJECT_SELECT`.
pub fn obj(row: &dyn Columns) -> Result<Obj> {
    let Value::Object(data) = row.json("data")? else {
        return Err(invalid("object data", "not a JSON object"));
    };
    Ok(Obj {
        id: row.int("id")?,
        data,
        created: row.time("created_at")?,
        last_updated: row.time("updated_at")?,
    })
}

pub const CHANGE_SELECT: &str = "select id, time, user_id, user_name, request_id, action, object_type, object_id, \
     object_repr, prechange_data, postchange_data from object_changes c";

/// The columns a change writes, in the order of `change_args`.
pub const CHANGE_COLUMNS: [&str; 10] = [
    "time",
    "user_id",
    "user_name",
    "request_id",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "prechange_data",
    "postchange_data",
];

pub fn change_args(c: &Change) -> [Arg; 10] {
    let enc = |v: &Value| match v {
        Value::Null => Arg::Null,
        v => Arg::Text(v.to_string()),
    };
    [
        Arg::from(c.time),
        c.user_id.map_or(Arg::Null, Arg::Int),
        Arg::from(&c.user_name),
        Arg::from(&c.request_id),
        Arg::from(c.action.as_str()),
        Arg::from(&c.object_type),
        Arg::Int(c.object_id),
        Arg::from(&c.object_repr),
        enc(&c.prechange_data),
        enc(&c.postchange_data),
    ]
}

/// A row of `CHANGE_SELECT`.
pub fn change(row: &dyn Columns) -> Result<Change> {
    let action = row.text("action")?;
    Ok(Change {
        id: row.int("id")?,
        time: row.time("time")?,
        user_id: row.opt_int("user_id")?,
        user_name: row.text("user_name")?,
        request_id: row.text("request_id")?,
        action: ChangeAction::parse(&action).ok_or_else(|| invalid("change action", &action))?,
        object_type: row.text("object_type")?,
        object_id: row.int("object_id")?,
        object_repr: row.text("object_repr")?,
        prechange_data: row.json("prechange_data")?,
        postchange_data: row.json("postchange_data")?,
    })
}
