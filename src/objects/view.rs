//! What clients and receivers see of an object: the REST view (full or brief), its `display`,
//! and the minimal-form snapshot change records and webhooks carry.

use super::{django_time, Loader, Obj};
use crate::catalog::{display_parts, Catalog, DisplayPart, FieldKind, ObjectType};
use crate::error::StoreError;
use crate::events::rest_time;

type Result<T> = std::result::Result<T, StoreError>;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};

/// The type objects' tags belong to.
pub const TAG_TYPE: &str = "extras.tag";

/// Objects referenced by the ones being shown, by `(type, id)`.
pub type Related = HashMap<(String, i64), Obj>;

/// How deep nested references are loaded (a device's type's manufacturer is two).
const DEPTH: usize = 3;

/// Loads what the views of `objs` (all of type `ty`) refer to, into `related`.
pub async fn load_related(
    catalog: &Catalog,
    loader: &mut dyn Loader,
    ty: &ObjectType,
    objs: &[&Obj],
    related: &mut Related,
) -> Result<()> {
    let mut frontier: BTreeSet<(String, i64)> = BTreeSet::new();
    for obj in objs {
        refs_of(ty, obj, false, &mut frontier);
    }
    for _ in 0..DEPTH {
        if frontier.is_empty() {
            break;
        }
        let mut missing: HashMap<&str, Vec<i64>> = HashMap::new();
        for (t, id) in frontier.iter().filter(|k| !related.contains_key(*k)) {
            missing.entry(t.as_str()).or_default().push(*id);
        }
        for (t, ids) in missing {
            for obj in loader.load(t, &ids).await? {
                related.insert((t.to_string(), obj.id), obj);
            }
        }
        // What the nested (brief) views of this level refer to in turn.
        let mut next = BTreeSet::new();
        for key in &frontier {
            if let (Some(target), Some(obj)) = (catalog.get(&key.0), related.get(key)) {
                refs_of(target, obj, true, &mut next);
            }
        }
        frontier = next;
    }
    Ok(())
}

/// The references a view of `obj` shows: all foreign keys and tags, or a brief view's.
fn refs_of(ty: &ObjectType, obj: &Obj, brief: bool, out: &mut BTreeSet<(String, i64)>) {
    let display_fks = ty.display_fks();
    for f in &ty.fields {
        let shown = !brief || ty.brief.contains(&f.name) || display_fks.contains(&f.name);
        if f.kind != FieldKind::Fk || !shown {
            continue;
        }
        if let (Some(to), Some(id)) = (&f.to, obj.data.get(&f.name).and_then(Value::as_i64)) {
            out.insert((to.clone(), id));
        }
    }
    if !brief && ty.tags {
        for id in obj.tag_ids() {
            out.insert((TAG_TYPE.to_string(), id));
        }
    }
}

/// `/api/dcim/sites/1/`.
pub fn url_of(ty: &ObjectType, id: i64) -> String {
    format!("/api/{}/{id}/", ty.api_path)
}

/// `/dcim/sites/1/`: the object's page (NetBox 4's `display_url`; Herald's pages follow
/// NetBox's paths).
pub fn display_url_of(ty: &ObjectType, id: i64) -> String {
    format!("/{}/{id}/", ty.api_path)
}

/// The text at `path` from `obj` (`name`, `id`, or `device_type.manufacturer.name` through
/// foreign keys loaded in `related`); `None` when something on the way is missing or null.
fn path_text(catalog: &Catalog, ty: &ObjectType, obj: &Obj, path: &str, related: &Related) -> Option<String> {
    if path == "id" {
        return Some(obj.id.to_string());
    }
    let (mut ty, mut obj) = (ty, obj);
    let mut parts = path.split('.').peekable();
    while let Some(name) = parts.next() {
        let value = obj.data.get(name)?;
        if parts.peek().is_none() {
            return match value {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                v => Some(v.to_string()),
            };
        }
        let to = ty.field(name)?.to.as_deref()?;
        ty = catalog.get(to)?;
        obj = related.get(&(to.to_string(), value.as_i64()?))?;
    }
    None
}

/// `format` filled in; `None` when `strict` and a part is missing.
fn render(
    catalog: &Catalog,
    ty: &ObjectType,
    obj: &Obj,
    format: &str,
    related: &Related,
    strict: bool,
) -> Option<String> {
    let mut out = String::new();
    for part in display_parts(format) {
        match part {
            DisplayPart::Text(t) => out.push_str(t),
            DisplayPart::Field(f) => match path_text(catalog, ty, obj, f, related) {
                Some(text) => out.push_str(&text),
                None if strict => return None,
                None => {}
            },
        }
    }
    Some(out.trim().to_string())
}

/// The object's own `display` format filled in, unless it comes out empty (an unnamed device).
pub fn primary_display(catalog: &Catalog, ty: &ObjectType, obj: &Obj, related: &Related) -> Option<String> {
    let primary = render(catalog, ty, obj, &ty.display, related, false).unwrap_or_default();
    (!primary.is_empty() && !primary.starts_with('(')).then_some(primary)
}

/// The object's `display`: its format, else its fallback (following foreign keys in
/// `related`), else `Device 7`.
pub fn display(catalog: &Catalog, ty: &ObjectType, obj: &Obj, related: &Related) -> String {
    if let Some(primary) = primary_display(catalog, ty, obj, related) {
        return primary;
    }
    if let Some(text) = ty
        .display_fallback
        .as_deref()
        .and_then(|f| render(catalog, ty, obj, f, related, true))
    {
        return text;
    }
    let mut name = ty.verbose_name.clone();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{name} {}", obj.id)
}

/// The object as the REST API shows it, with relative `url`s; `brief` gives the nested form.
pub fn view(catalog: &Catalog, ty: &ObjectType, obj: &Obj, related: &Related, brief: bool) -> Value {
    view_at(catalog, ty, obj, related, brief, 0)
}

fn view_at(catalog: &Catalog, ty: &ObjectType, obj: &Obj, related: &Related, brief: bool, depth: usize) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::from(obj.id));
    m.insert("url".into(), Value::from(url_of(ty, obj.id)));
    m.insert("display_url".into(), Value::from(display_url_of(ty, obj.id)));
    m.insert("display".into(), Value::from(display(catalog, ty, obj, related)));
    for f in &ty.fields {
        if brief && !ty.brief.contains(&f.name) {
            continue;
        }
        let stored = obj.data.get(&f.name).cloned().unwrap_or_else(|| f.default_value());
        let shown = match f.kind {
            FieldKind::Choice => match stored.as_str() {
                Some(v) => json!({"value": v, "label": catalog.choice_label(f, v).unwrap_or(v)}),
                None => Value::Null,
            },
            FieldKind::Fk => match (stored.as_i64(), f.to.as_deref().and_then(|t| catalog.get(t))) {
                (Some(id), Some(target)) => nested(catalog, target, id, related, depth + 1),
                _ => Value::Null,
            },
            FieldKind::Family => {
                let source = f.from.as_deref().and_then(|s| obj.data.get(s)).and_then(Value::as_str);
                match source.and_then(super::values::family) {
                    Some(n) => json!({"value": n, "label": format!("IPv{n}")}),
                    None => Value::Null,
                }
            }
            FieldKind::Decimal => stored.as_f64().map(Value::from).unwrap_or(Value::Null),
            _ => stored,
        };
        m.insert(f.name.clone(), shown);
    }
    if !brief {
        if ty.tags {
            let tags = catalog.get(TAG_TYPE);
            let list: Vec<Value> = match tags {
                Some(tag_type) => obj
                    .tag_ids()
                    .into_iter()
                    .map(|id| nested(catalog, tag_type, id, related, depth + 1))
                    .collect(),
                None => Vec::new(),
            };
            m.insert("tags".into(), Value::Array(list));
            m.insert("custom_fields".into(), Value::Object(Map::new()));
        }
        m.insert("created".into(), Value::from(rest_time(obj.created)));
        m.insert("last_updated".into(), Value::from(rest_time(obj.last_updated)));
    }
    Value::Object(m)
}

fn nested(catalog: &Catalog, ty: &ObjectType, id: i64, related: &Related, depth: usize) -> Value {
    match related.get(&(ty.name().to_string(), id)) {
        Some(obj) if depth <= DEPTH => view_at(catalog, ty, obj, related, true, depth),
        _ => json!({"id": id, "url": url_of(ty, id), "display_url": display_url_of(ty, id)}),
    }
}

/// The object in NetBox's minimal form, as change records and webhook snapshots carry it:
/// Django's field serialization (foreign keys as ids, choices as raw values, decimals as
/// strings, times with milliseconds), custom fields, and tags as a sorted list of names.
/// `last_updated` is left out, as NetBox 4 leaves it out (it changes on every save, so a
/// receiver comparing prechange and postchange would always see it differ).
pub fn snapshot(ty: &ObjectType, obj: &Obj, related: &Related) -> Value {
    let mut m = Map::new();
    m.insert("created".into(), Value::from(django_time(obj.created)));
    for f in ty.fields.iter().filter(|f| f.writable()) {
        let stored = obj.data.get(&f.name).cloned().unwrap_or_else(|| f.default_value());
        let v = match (f.kind, stored.as_f64()) {
            (FieldKind::Decimal, Some(n)) => Value::from(format!("{n:.*}", f.places.unwrap_or(0) as usize)),
            _ => stored,
        };
        m.insert(f.name.clone(), v);
    }
    if ty.tags {
        m.insert("custom_fields".into(), Value::Object(Map::new()));
        let mut names: Vec<String> = obj
            .tag_ids()
            .into_iter()
            .filter_map(|id| related.get(&(TAG_TYPE.to_string(), id)))
            .filter_map(|t| t.data.get("name").and_then(Value::as_str).map(String::from))
            .collect();
        names.sort();
        m.insert("tags".into(), json!(names));
    }
    Value::Object(m)
}
