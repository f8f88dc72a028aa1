//! Groups and permissions: who may manage them, and what a permission may say. Constraints
//! (NetBox's attribute filters on a permission) are not supported, and refused rather than
//! ignored.

use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor, Group, Permission, User};
use crate::validate::{refuse_unknown_keys, FieldErrors, Reader};
use chrono::Utc;
use serde_json::Value;

impl Services {
    /// The groups, by name; only those named, when names are given.
    pub async fn groups(&self, actor: &Actor, names: &[String]) -> Result<Vec<Group>> {
        require(actor, types::GROUP, Action::View)?;
        let mut all = self.store.groups().await?;
        all.retain(|g| names.is_empty() || names.contains(&g.name));
        Ok(all)
    }

    pub async fn group(&self, actor: &Actor, id: i64) -> Result<Group> {
        require(actor, types::GROUP, Action::View)?;
        Ok(self.store.group(id).await?)
    }

    /// Creates a group from `{"name", "description"}`.
    pub async fn create_group(&self, actor: &Actor, body: &Value) -> Result<Group> {
        require(actor, types::GROUP, Action::Add)?;
        let blank = Group {
            id: 0,
            name: String::new(),
            description: String::new(),
        };
        let g = read_group(blank, body, true)?;
        Ok(self.store.create_group(&g.name, &g.description).await?)
    }

    pub async fn update_group(&self, actor: &Actor, id: i64, body: &Value) -> Result<Group> {
        require(actor, types::GROUP, Action::Change)?;
        let g = read_group(self.store.group(id).await?, body, false)?;
        self.store.update_group(&g).await?;
        Ok(g)
    }

    pub async fn delete_group(&self, actor: &Actor, id: i64) -> Result<()> {
        require(actor, types::GROUP, Action::Delete)?;
        Ok(self.store.delete_group(id).await?)
    }

    pub async fn permissions(&self, actor: &Actor) -> Result<Vec<Permission>> {
        require(actor, types::PERMISSION, Action::View)?;
        Ok(self.store.permissions().await?)
    }

    /// The users and groups these permissions (as another call of this layer gave them) name:
    /// what showing them nests.
    pub async fn permission_members(&self, perms: &[Permission]) -> Result<(Vec<User>, Vec<Group>)> {
        let named = |ids: &dyn Fn(&Permission) -> &Vec<i64>, id: i64| perms.iter().any(|p| ids(p).contains(&id));
        let users = self
            .store
            .users()
            .await?
            .into_iter()
            .filter(|u| named(&|p| &p.users, u.id))
            .collect();
        let groups = self
            .store
            .groups()
            .await?
            .into_iter()
            .filter(|g| named(&|p| &p.groups, g.id))
            .collect();
        Ok((users, groups))
    }

    pub async fn permission(&self, actor: &Actor, id: i64) -> Result<Permission> {
        require(actor, types::PERMISSION, Action::View)?;
        Ok(self.store.permission(id).await?)
    }

    /// Creates a permission from NetBox's body (`name`, `object_types`, `actions`, `users`,
    /// `groups`, `enabled`, `description`; `constraints` only null).
    pub async fn create_permission(&self, actor: &Actor, body: &Value) -> Result<Permission> {
        require(actor, types::PERMISSION, Action::Add)?;
        let now = Utc::now();
        let blank = Permission {
            id: 0,
            name: String::new(),
            description: String::new(),
            enabled: true,
            object_types: Vec::new(),
            actions: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            created: now,
            last_updated: now,
        };
        let p = self.read_permission(blank, body, true).await?;
        Ok(self.store.create_permission(&p, now).await?)
    }

    pub async fn update_permission(&self, actor: &Actor, id: i64, body: &Value) -> Result<Permission> {
        require(actor, types::PERMISSION, Action::Change)?;
        let p = self
            .read_permission(self.store.permission(id).await?, body, false)
            .await?;
        Ok(self.store.update_permission(&p, Utc::now()).await?)
    }

    pub async fn delete_permission(&self, actor: &Actor, id: i64) -> Result<()> {
        require(actor, types::PERMISSION, Action::Delete)?;
        Ok(self.store.delete_permission(id).await?)
    }

    /// The fields of `body` over `p`, checked.
    async fn read_permission(&self, mut p: Permission, body: &Value, creating: bool) -> Result<Permission> {
        let mut r = Reader::new(body)?;
        if let Some(name) = r.string("name") {
            p.name = name.trim().to_string();
            if p.name.is_empty() || p.name.chars().count() > 100 {
                r.errors.add("name", "Enter a name of 1 to 100 characters.");
            }
        } else if creating && !r.has("name") {
            r.errors.add("name", "This field is required.");
        }
        if let Some(d) = r.nullable_string("description") {
            p.description = d.unwrap_or_default();
        }
        if let Some(e) = r.bool("enabled") {
            p.enabled = e;
        }
        if let Some(types_given) = r.string_set("object_types") {
            for t in &types_given {
                if self.catalog.get(t).is_none() && !types::ALL.contains(&t.as_str()) {
                    r.errors.add("object_types", format!("Unknown object type \"{t}\"."));
                }
            }
            p.object_types = types_given;
        } else if creating && !r.has("object_types") {
            r.errors.add("object_types", "This field is required.");
        }
        if let Some(actions) = r.string_set("actions") {
            p.actions = Vec::new();
            for a in &actions {
                match Action::parse(a) {
                    Some(a) if !p.actions.contains(&a) => p.actions.push(a),
                    Some(_) => {}
                    None => r.errors.add(
                        "actions",
                        format!("\"{a}\" is not an action: use view, add, change or delete."),
                    ),
                }
            }
        } else if creating && !r.has("actions") {
            r.errors.add("actions", "This field is required.");
        }
        if p.actions.is_empty() && !r.errors.0.contains_key("actions") {
            r.errors.add("actions", "Give at least one action.");
        }
        let known = |k: &str| {
            matches!(
                k,
                "name" | "description" | "enabled" | "object_types" | "actions" | "users" | "groups" | "constraints"
            )
        };
        refuse_unknown_keys(body, known, "permissions", &mut r.errors);
        if !matches!(r.raw("constraints"), None | Some(Value::Null)) {
            r.errors.add(
                "constraints",
                "Constraints are not supported: leave this null (the permission then applies to every object of its types).",
            );
        }
        let errors: FieldErrors = std::mem::take(&mut r.errors);
        let mut errors = errors;
        if let Some(users) = self.read_ids(body, "users", &mut errors).await? {
            p.users = users;
        }
        if let Some(groups) = self.read_ids(body, "groups", &mut errors).await? {
            p.groups = groups;
        }
        Ok(errors.finish(p)?)
    }

    /// `users` or `groups` of a body: ids (or `{"id"}`s) of ones that exist.
    async fn read_ids(&self, body: &Value, field: &str, errors: &mut FieldErrors) -> Result<Option<Vec<i64>>> {
        let Some(given) = body.get(field) else { return Ok(None) };
        let ids: Option<Vec<i64>> = given.as_array().and_then(|items| {
            items
                .iter()
                .map(|v| v.as_i64().or_else(|| v.get("id").and_then(Value::as_i64)))
                .collect()
        });
        let Some(ids) = ids else {
            errors.add(field, "Expected a list of ids.");
            return Ok(None);
        };
        let known: Vec<i64> = match field {
            "users" => self.store.users().await?.iter().map(|u| u.id).collect(),
            _ => self.store.groups().await?.iter().map(|g| g.id).collect(),
        };
        for id in &ids {
            if !known.contains(id) {
                errors.add(field, format!("Invalid pk \"{id}\" - object does not exist."));
            }
        }
        Ok(Some(ids))
    }
}

fn read_group(mut g: Group, body: &Value, creating: bool) -> Result<Group> {
    let mut r = Reader::new(body)?;
    if let Some(name) = r.string("name") {
        g.name = name.trim().to_string();
        if g.name.is_empty() || g.name.chars().count() > 150 {
            r.errors.add("name", "Enter a name of 1 to 150 characters.");
        }
    } else if creating && !r.has("name") {
        r.errors.add("name", "This field is required.");
    }
    if let Some(d) = r.nullable_string("description") {
        g.description = d.unwrap_or_default();
        if g.description.chars().count() > 200 {
            r.errors
                .add("description", "Ensure this field has no more than 200 characters.");
        }
    }
    refuse_unknown_keys(body, |k| matches!(k, "name" | "description"), "groups", &mut r.errors);
    let errors = std::mem::take(&mut r.errors);
    errors.finish(g).map_err(Error::from)
}
