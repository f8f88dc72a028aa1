//! Reading a request body into an object's stored fields: values cleaned, foreign keys and
//! tags resolved, unique rules checked. Every field's errors are gathered, as NetBox does.

use super::{Fail, Reject, Run};
use crate::catalog::{FieldKind, ObjectType};
use crate::error::{unique_errors, StoreError};
use crate::objects::values::{as_integer, clean};
use crate::objects::view::TAG_TYPE;
use crate::objects::{unique_key, Lock, Obj};
use crate::validate::{refuse_unknown_keys, type_name, FieldErrors};
use serde_json::{json, Map, Value};

/// How far up a tree (a region's parents) a cycle check looks.
const MAX_TREE_DEPTH: usize = 256;

impl Run<'_> {
    /// Reads a body into stored fields, over `existing` for updates.
    pub(super) async fn read_body(
        &mut self,
        ty: &ObjectType,
        body: &Value,
        existing: Option<&Obj>,
        partial: bool,
    ) -> Result<Map<String, Value>, Fail> {
        let Value::Object(input) = body else {
            return Err(Fail::Fields(FieldErrors::single(
                "non_field_errors",
                format!("Invalid data. Expected a dictionary, but got {}.", type_name(body)),
            )));
        };
        let mut data = existing.map(|o| o.data.clone()).unwrap_or_default();
        let mut errors = FieldErrors::default();
        self.read_fields(ty, input, existing.is_some(), partial, &mut data, &mut errors)
            .await?;
        if ty.tags {
            self.read_tags(input, existing.is_none(), &mut data, &mut errors)
                .await?;
            read_custom_fields(input, &mut errors);
        }
        // Fields the type has (read-only ones, such as an address's family, are ignored as
        // NetBox ignores them), the other keys its REST view shows, and tags and custom fields
        // where it has them (empty custom fields anywhere: nothing is lost).
        let known = |k: &str| match k {
            "tags" => ty.tags,
            "custom_fields" => ty.tags || input[k].as_object().is_some_and(|m| m.is_empty()) || input[k].is_null(),
            _ => ty.field(k).is_some() || ty.sample.get(k).is_some(),
        };
        refuse_unknown_keys(body, known, &ty.plural(), &mut errors);
        if let Some(existing) = existing {
            self.check_trees(ty, existing.id, &data, &mut errors).await?;
        }
        errors.finish(data).map_err(Fail::Fields)
    }

    /// The type's writable fields: given ones cleaned, missing ones required or defaulted.
    async fn read_fields(
        &mut self,
        ty: &ObjectType,
        input: &Map<String, Value>,
        updating: bool,
        partial: bool,
        data: &mut Map<String, Value>,
        errors: &mut FieldErrors,
    ) -> Result<(), StoreError> {
        for f in ty.fields.iter().filter(|f| f.writable()) {
            let cleaned = match input.get(&f.name) {
                None if f.required && !(partial && updating) => Err("This field is required.".to_string()),
                None if !updating => Ok(f.default_value()),
                None => continue,
                Some(v) if f.kind == FieldKind::Fk => {
                    let to = f.to.as_deref().unwrap_or_default();
                    match self.resolve(to, v, f.null).await {
                        Ok(id) => Ok(id.map(Value::from).unwrap_or(Value::Null)),
                        Err(Reject::Invalid(m)) => Err(m),
                        Err(Reject::Store(e)) => return Err(e),
                    }
                }
                Some(v) => clean(self.catalog, f, v),
            };
            match cleaned {
                Ok(v) => {
                    data.insert(f.name.clone(), v);
                }
                Err(m) => errors.add(&f.name, m),
            }
        }
        Ok(())
    }

    /// `tags`: given ones resolved; none on a new object.
    async fn read_tags(
        &mut self,
        input: &Map<String, Value>,
        creating: bool,
        data: &mut Map<String, Value>,
        errors: &mut FieldErrors,
    ) -> Result<(), StoreError> {
        match input.get("tags") {
            Some(v) => match self.resolve_tags(v).await {
                Ok(ids) => {
                    data.insert("tags".into(), json!(ids));
                }
                Err(Reject::Invalid(m)) => errors.add("tags", m),
                Err(Reject::Store(e)) => return Err(e),
            },
            None if creating => {
                data.insert("tags".into(), json!([]));
            }
            None => {}
        }
        Ok(())
    }

    /// A tree field (a region's parent) may not point at the object itself or below it.
    async fn check_trees(
        &mut self,
        ty: &ObjectType,
        id: i64,
        data: &Map<String, Value>,
        errors: &mut FieldErrors,
    ) -> Result<(), StoreError> {
        for f in ty.fields.iter().filter(|f| f.tree) {
            let mut parent = data.get(&f.name).and_then(Value::as_i64);
            for _ in 0..MAX_TREE_DEPTH {
                let Some(p) = parent else { break };
                if p == id {
                    errors.add(
                        &f.name,
                        format!("Cannot assign self or child {} as parent.", ty.verbose_name),
                    );
                    break;
                }
                parent = self
                    .tx
                    .get(ty.name(), &[p])
                    .await?
                    .pop()
                    .and_then(|o| o.data.get(&f.name).and_then(Value::as_i64));
            }
        }
        Ok(())
    }

    /// A foreign key given as an id, `{"id": ...}` or a dictionary of attributes.
    async fn resolve(&mut self, to: &str, v: &Value, nullable: bool) -> Result<Option<i64>, Reject> {
        if v.is_null() {
            return if nullable {
                Ok(None)
            } else {
                Err(Reject::Invalid("This field may not be null.".into()))
            };
        }
        let id = match v {
            Value::Object(o) => match o.get("id") {
                Some(id) => as_integer(id),
                None => return self.resolve_attrs(to, o).await.map(Some),
            },
            Value::Array(_) | Value::Bool(_) => None,
            other => as_integer(other),
        };
        let Some(id) = id else {
            return Err(Reject::Invalid(format!(
                "Related objects must be referenced by numeric ID or by dictionary of attributes. Received an unrecognized value: {v}"
            )));
        };
        let key = (to.to_string(), id);
        self.lock_target(to, id).await?;
        if !self.related.contains_key(&key) || self.index.contains_key(&key) {
            match self.tx.get(to, &[id]).await?.pop() {
                Some(obj) => {
                    self.related.insert(key, obj);
                }
                None => {
                    return Err(Reject::Invalid(format!(
                        "Related object not found using the provided numeric ID: {id}"
                    )))
                }
            }
        }
        Ok(Some(id))
    }

    async fn resolve_attrs(&mut self, to: &str, attrs: &Map<String, Value>) -> Result<i64, Reject> {
        let target = self.catalog.get(to);
        let shown = Value::Object(attrs.clone()).to_string();
        let not_found = || {
            Reject::Invalid(format!(
                "Related object not found using the provided attributes: {shown}"
            ))
        };
        let known = |k: &str| target.is_some_and(|t| t.field(k).is_some_and(|f| f.writable()));
        if attrs.is_empty() || attrs.keys().any(|k| !known(k)) {
            return Err(not_found());
        }
        // Attributes that make up a unique rule are one index lookup.
        let rule = target.and_then(|t| {
            t.unique
                .iter()
                .find(|r| r.len() == attrs.len() && r.iter().all(|f| attrs.contains_key(f)))
        });
        if let Some(rule) = rule {
            let values: Vec<&Value> = rule.iter().map(|f| &attrs[f]).collect();
            let owner = self.tx.key_owner(to, &rule.join(","), &unique_key(&values)).await?;
            let id = owner.ok_or_else(not_found)?;
            self.lock_target(to, id).await?;
            return Ok(id);
        }
        let pairs: Vec<(String, Value)> = attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        match self.tx.find(to, &pairs, 2).await?.as_slice() {
            [id] => {
                self.lock_target(to, *id).await?;
                Ok(*id)
            }
            [] => Err(not_found()),
            _ => Err(Reject::Invalid(format!(
                "Multiple objects match the provided attributes: {shown}"
            ))),
        }
    }

    async fn resolve_tags(&mut self, v: &Value) -> Result<Vec<i64>, Reject> {
        let Value::Array(items) = v else {
            return Err(Reject::Invalid(format!(
                "Expected a list of items but got type \"{}\".",
                type_name(v)
            )));
        };
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            if let Some(id) = self.resolve(TAG_TYPE, item, false).await? {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Locks an object a foreign key is about to point at against deletion (once a request).
    async fn lock_target(&mut self, ty: &str, id: i64) -> Result<(), StoreError> {
        if self.shared.insert((ty.to_string(), id)) {
            self.tx.lock(ty, &[id], Lock::Share).await?;
        }
        Ok(())
    }

    /// Unique rules as `(rule, value)` keys; rules with a null in them do not apply.
    pub(super) fn keys(ty: &ObjectType, obj: &Obj) -> Vec<(String, String)> {
        ty.unique
            .iter()
            .filter_map(|rule| {
                let values: Vec<&Value> = rule.iter().map(|f| obj.data.get(f).unwrap_or(&Value::Null)).collect();
                if values.iter().any(|v| v.is_null()) {
                    return None;
                }
                Some((rule.join(","), unique_key(&values)))
            })
            .collect()
    }

    pub(super) async fn check_unique(&mut self, ty: &ObjectType, obj: &Obj) -> Result<(), Fail> {
        let mut errors = FieldErrors::default();
        for (rule, value) in Self::keys(ty, obj) {
            let owner = self.tx.key_owner(ty.name(), &rule, &value).await?;
            if owner.is_some_and(|o| o != obj.id) {
                let fields: Vec<&str> = rule.split(',').collect();
                errors.merge(unique_errors(&ty.verbose_name, &fields));
            }
        }
        errors.finish(()).map_err(Fail::Fields)
    }
}

/// Custom fields: none are defined, so any given one is unknown.
fn read_custom_fields(input: &Map<String, Value>, errors: &mut FieldErrors) {
    match input.get("custom_fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for k in m.keys() {
                errors.add(
                    "custom_fields",
                    format!("Unknown field name '{k}' in custom field data."),
                );
            }
        }
        Some(other) => errors.add(
            "custom_fields",
            format!("Invalid data. Expected a dictionary, but got {}.", type_name(other)),
        ),
    }
}
