//! The change log as NetBox's REST API shows it: each change with its object's brief view
//! while the object exists.

use super::filters::{Given, Kind, Param, Spec};
use super::{require, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::changes::{Change, ChangeAction, ChangeFilter};
use crate::events::rest_time;
use crate::page::Page;
use serde_json::{json, Value};
use std::collections::HashMap;

/// One change in NetBox's shape; `changed_object` is the object's brief view (or null) and
/// `url`s are relative.
pub fn change_json(c: &Change, changed_object: Value) -> Value {
    let user = match c.user_id {
        Some(id) => json!({
            "id": id,
            "url": format!("/api/users/users/{id}/"),
            "display": c.user_name,
            "username": c.user_name,
        }),
        None => Value::Null,
    };
    json!({
        "id": c.id,
        "url": format!("/api/extras/object-changes/{}/", c.id),
        "display": format!("{} {}", c.object_repr, c.action.label().to_lowercase()),
        "time": rest_time(c.time),
        "user": user,
        "user_name": c.user_name,
        "request_id": c.request_id,
        "action": {"value": c.action.as_str(), "label": c.action.label()},
        "changed_object_type": c.object_type,
        "changed_object_id": c.object_id,
        "changed_object": changed_object,
        "object_repr": c.object_repr,
        "prechange_data": c.prechange_data,
        "postchange_data": c.postchange_data,
    })
}

/// The actions named by an `action` filter; an unknown one is an error naming the parameter.
pub fn actions(values: &[String]) -> Result<Vec<ChangeAction>> {
    values
        .iter()
        .map(|a| {
            ChangeAction::parse(a).ok_or_else(|| {
                crate::error::Error::field(
                    "action",
                    format!("Select a valid choice. {a} is not one of the available choices."),
                )
            })
        })
        .collect()
}

/// What the change log may be filtered by.
pub static FILTERS: Spec = Spec {
    list: "changes",
    params: &[
        Param {
            name: "id",
            kind: Kind::Ints,
        },
        Param {
            name: "request_id",
            kind: Kind::Texts,
        },
        Param {
            name: "action",
            kind: Kind::Choice(&["create", "update", "delete"]),
        },
        Param {
            name: "changed_object_type",
            kind: Kind::Texts,
        },
        Param {
            name: "changed_object_id",
            kind: Kind::Ints,
        },
        Param {
            name: "user_id",
            kind: Kind::Ints,
        },
        Param {
            name: "user_name",
            kind: Kind::Texts,
        },
    ],
};

/// The change filter `given` names (and `also`, which the caller reads itself).
pub fn change_filter(given: &Given, also: &[&str]) -> Result<ChangeFilter> {
    let r = FILTERS.read(given, also)?;
    Ok(ChangeFilter {
        id: r.ints("id")?,
        request_id: r.texts("request_id"),
        action: actions(&r.choices("action")?)?,
        object_type: r.texts("changed_object_type"),
        object_id: r.ints("changed_object_id")?,
        user_id: r.ints("user_id")?,
        user_name: r.texts("user_name"),
    })
}

impl Services {
    /// One page of changes, newest first, in NetBox's shape.
    pub async fn changes(&self, actor: &Actor, filter: &ChangeFilter, limit: i64, offset: i64) -> Result<Page<Value>> {
        require(actor, types::OBJECT_CHANGE, Action::View)?;
        let page = self.store.object_changes(filter, limit, offset).await?;
        let briefs = self.briefs_of(&page.items).await?;
        let items = page
            .items
            .iter()
            .map(|c| {
                let brief = briefs.get(&(c.object_type.clone(), c.object_id)).cloned();
                change_json(c, brief.unwrap_or(Value::Null))
            })
            .collect();
        Ok(Page::new(page.count, items))
    }

    /// Brief views of the objects `changes` are about, those that still exist.
    async fn briefs_of(&self, changes: &[Change]) -> Result<HashMap<(String, i64), Value>> {
        let mut by_type: Vec<(String, Vec<i64>)> = Vec::new();
        for c in changes {
            match by_type.iter_mut().find(|(t, _)| *t == c.object_type) {
                Some((_, ids)) => ids.push(c.object_id),
                None => by_type.push((c.object_type.clone(), vec![c.object_id])),
            }
        }
        let mut briefs = HashMap::new();
        for (t, mut ids) in by_type {
            let Some(ty) = self.catalog.get(&t) else { continue };
            ids.sort_unstable();
            ids.dedup();
            let objs = self.store.get_objects(&t, &ids).await?;
            for (obj, v) in objs.iter().zip(self.object_views(ty, &objs, true).await?) {
                briefs.insert((t.clone(), obj.id), v);
            }
        }
        Ok(briefs)
    }
}
