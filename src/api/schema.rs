//! `/api/schema/`: an OpenAPI 3 document generated from the catalog and the lists' filters:
//! each type's list and detail endpoints, its filters, what a write takes and what a read
//! gives, and the webhooks', event rules' and deliveries' lists and records. pynetbox's
//! `openapi()` reads it (NetBox 3.5 and later serve theirs at this path); `strict_filters`
//! checks filter names against it.

use super::{AppState, API_VERSION};
use crate::catalog::{Catalog, Field, FieldKind, ObjectType};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};

/// The document depends only on the catalog, which does not change while Herald runs: it is
/// written on the first request and served as written after that.
pub fn router() -> Router<AppState> {
    let written: Arc<OnceLock<Bytes>> = Arc::default();
    Router::new().route(
        "/api/schema/",
        get(move |State(st): State<AppState>| async move {
            let body = written.get_or_init(|| Bytes::from(document(&st.svc.catalog).to_string()));
            ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
        }),
    )
}

/// `dcim.devicetype` → `DcimDevicetype`, a schema's name.
fn schema_name(t: &ObjectType) -> String {
    let mut name = String::new();
    for part in [&t.app_label, &t.model] {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            name.extend(c.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// The values a choice field takes.
fn choice_values<'a>(catalog: &'a Catalog, f: &Field) -> Vec<&'a str> {
    catalog
        .choices(f.choices.as_deref().unwrap_or_default())
        .iter()
        .map(|(v, _)| v.as_str())
        .collect()
}

/// What a read shows of a field.
fn read_schema(catalog: &Catalog, f: &Field) -> Value {
    let mut s = match f.kind {
        FieldKind::String | FieldKind::Address | FieldKind::Prefix | FieldKind::Mac => json!({"type": "string"}),
        FieldKind::Integer => json!({"type": "integer"}),
        FieldKind::Decimal => json!({"type": "number"}),
        FieldKind::Boolean => json!({"type": "boolean"}),
        FieldKind::Choice => {
            let values = choice_values(catalog, f);
            json!({"type": "object", "properties": {"value": {"type": "string", "enum": values}, "label": {"type": "string"}}})
        }
        FieldKind::Family => {
            json!({"type": "object", "properties": {"value": {"type": "integer", "enum": [4, 6]}, "label": {"type": "string"}}})
        }
        FieldKind::Fk => json!({"$ref": "#/components/schemas/NestedObject"}),
    };
    if f.null || f.kind == FieldKind::Choice {
        s["nullable"] = json!(true);
    }
    s
}

/// What a write takes for a field.
fn write_schema(catalog: &Catalog, f: &Field) -> Value {
    let mut s = match f.kind {
        FieldKind::String | FieldKind::Address | FieldKind::Prefix | FieldKind::Mac => {
            let mut s = json!({"type": "string"});
            if let Some(n) = f.max_length {
                s["maxLength"] = json!(n);
            }
            if let Some(p) = &f.pattern {
                s["pattern"] = json!(p);
            }
            s
        }
        FieldKind::Integer | FieldKind::Fk => json!({"type": "integer"}),
        FieldKind::Decimal => json!({"type": "number"}),
        FieldKind::Boolean => json!({"type": "boolean"}),
        FieldKind::Choice => json!({"type": "string", "enum": choice_values(catalog, f)}),
        FieldKind::Family => json!({"type": "integer", "readOnly": true}),
    };
    for (key, bound) in [("minimum", f.min), ("maximum", f.max)] {
        if let Some(b) = bound {
            s[key] = json!(b);
        }
    }
    if f.null {
        s["nullable"] = json!(true);
    }
    s
}

/// A type's read and write schemas.
fn type_schemas(catalog: &Catalog, t: &ObjectType, schemas: &mut Map<String, Value>) {
    let mut read = Map::new();
    for (k, v) in [
        ("id", json!({"type": "integer", "readOnly": true})),
        ("url", json!({"type": "string", "readOnly": true})),
        ("display_url", json!({"type": "string", "readOnly": true})),
        ("display", json!({"type": "string", "readOnly": true})),
    ] {
        read.insert(k.into(), v);
    }
    let mut write = Map::new();
    let mut required = Vec::new();
    for f in &t.fields {
        read.insert(f.name.clone(), read_schema(catalog, f));
        if f.writable() {
            write.insert(f.name.clone(), write_schema(catalog, f));
            if f.required {
                required.push(f.name.clone());
            }
        }
    }
    if t.tags {
        read.insert(
            "tags".into(),
            json!({"type": "array", "items": {"$ref": "#/components/schemas/NestedObject"}}),
        );
        read.insert("custom_fields".into(), json!({"type": "object"}));
        write.insert(
            "tags".into(),
            json!({"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "object"}]}}),
        );
    }
    for k in ["created", "last_updated"] {
        read.insert(k.into(), json!({"type": "string", "nullable": true, "readOnly": true}));
    }
    let name = schema_name(t);
    schemas.insert(
        name.clone(),
        json!({"type": "object", "properties": read, "required": ["id", "url", "display"]}),
    );
    let mut writable = json!({"type": "object", "properties": write});
    if !required.is_empty() {
        writable["required"] = json!(required);
    }
    schemas.insert(format!("Writable{name}"), writable);
    schemas.insert(
        format!("Paginated{name}List"),
        json!({
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer"},
                "next": {"type": "string", "nullable": true},
                "previous": {"type": "string", "nullable": true},
                "results": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
            },
        }),
    );
}

/// Lookups of text fields (`name__ic=`).
const TEXT_LOOKUPS: [&str; 12] = [
    "n", "ic", "nic", "ie", "nie", "isw", "nisw", "iew", "niew", "empty", "regex", "iregex",
];
/// Lookups of numbers and times (`vid__gte=`).
const ORDER_LOOKUPS: [&str; 5] = ["n", "gt", "gte", "lt", "lte"];

/// Every filter a type's list takes, as query parameters (each may repeat): every field with
/// its lookups, as NetBox's schema lists them, so that pynetbox's `strict_filters` knows them.
fn list_parameters(t: &ObjectType) -> Vec<Value> {
    let param = |name: &str, item: Value| {
        json!({"name": name, "in": "query", "required": false,
               "schema": {"type": "array", "items": item}, "style": "form", "explode": true})
    };
    let text = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let mut params = vec![
        json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}}),
        json!({"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}}),
        json!({"name": "q", "in": "query", "required": false, "schema": {"type": "string"}}),
        json!({"name": "ordering", "in": "query", "required": false, "schema": {"type": "string"}}),
        json!({"name": "brief", "in": "query", "required": false, "schema": {"type": "boolean"}}),
    ];
    let mut with_lookups = |name: &str, item: &Value, lookups: &[&str]| {
        params.push(param(name, item.clone()));
        for l in lookups {
            let item = if *l == "empty" {
                json!({"type": "boolean"})
            } else {
                item.clone()
            };
            params.push(param(&format!("{name}__{l}"), item));
        }
    };
    with_lookups("id", &integer, &ORDER_LOOKUPS);
    for name in ["created", "last_updated"] {
        with_lookups(name, &text, &ORDER_LOOKUPS);
    }
    for f in t.fields.iter().filter(|f| f.kind != FieldKind::Family) {
        match f.kind {
            FieldKind::Fk => {
                with_lookups(&format!("{}_id", f.name), &integer, &["n"]);
                with_lookups(&f.name, &text, &["n"]);
            }
            FieldKind::Integer | FieldKind::Decimal => {
                with_lookups(&f.name, &json!({"type": "number"}), &ORDER_LOOKUPS)
            }
            FieldKind::Boolean => with_lookups(&f.name, &json!({"type": "boolean"}), &[]),
            FieldKind::Choice => with_lookups(&f.name, &text, &["n", "empty"]),
            _ => with_lookups(&f.name, &text, &TEXT_LOOKUPS),
        }
    }
    if t.tags {
        with_lookups("tag", &text, &["n"]);
        with_lookups("tag_id", &integer, &["n"]);
    }
    let computed: &[(&str, &[&str])] = match t.name() {
        "ipam.ipaddress" => &[("parent", &[]), ("mask_length", &ORDER_LOOKUPS)],
        "ipam.prefix" => &[
            ("within", &[]),
            ("within_include", &[]),
            ("contains", &[]),
            ("mask_length", &ORDER_LOOKUPS),
            ("children", &ORDER_LOOKUPS),
            ("depth", &ORDER_LOOKUPS),
        ],
        "dcim.interface" => &[("kind", &["n"])],
        _ => &[],
    };
    for (name, lookups) in computed {
        let item = if matches!(*name, "mask_length" | "children" | "depth") {
            &integer
        } else {
            &text
        };
        with_lookups(name, item, lookups);
    }
    params
}

fn responses(ok: &str, body: Option<Value>) -> Value {
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut r = json!({
        "400": {"description": "A field or parameter is wrong; the body names it.", "content": error["content"]},
        "401": {"description": "No credentials, or a token that is not valid.", "content": error["content"]},
        "403": {"description": "Not allowed.", "content": error["content"]},
        "404": {"description": "Not found.", "content": error["content"]},
        "409": {"description": "Refused: others depend on the object.", "content": error["content"]},
        "413": {"description": "The body or the list is over Herald's bounds.", "content": error["content"]},
        "414": {"description": "The URI is over Herald's bound.", "content": error["content"]},
        "429": {"description": "Too many attempts.", "content": error["content"]},
        "503": {"description": "The database is busy; try again.", "content": error["content"]},
    });
    r[ok] = match body {
        Some(schema) => json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
        None => json!({"description": "Done; no body."}),
    };
    r
}

/// A create's answers, with links from the new object's id to its detail operations (which
/// lets a client, or a test, follow what it made).
fn created(t: &ObjectType, schema: Value) -> Value {
    let mut r = responses("201", Some(schema));
    let links: Map<String, Value> = ["retrieve", "update", "partial_update", "destroy"]
        .iter()
        .map(|op| {
            let link = json!({
                "operationId": format!("{}_{}_{op}", t.app_label, t.model),
                "parameters": {"id": "$response.body#/id"},
            });
            (format!("{op}_created"), link)
        })
        .collect();
    r["201"]["links"] = Value::Object(links);
    r
}

/// Every path of one type.
fn type_paths(t: &ObjectType, paths: &mut Map<String, Value>) {
    let name = schema_name(t);
    let one = json!({"$ref": format!("#/components/schemas/{name}")});
    let many = json!({"type": "array", "items": one});
    let writable = json!({"$ref": format!("#/components/schemas/Writable{name}")});
    let one_or_many = json!({"oneOf": [writable, {"type": "array", "items": writable}]});
    let body = |schema: Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    let id_list = json!({"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}});
    let tag = t.app_label.clone();
    let op = |id: &str, extra: Value| {
        let mut o = json!({"operationId": format!("{}_{}_{id}", t.app_label, t.model), "tags": [tag]});
        if let (Value::Object(o), Value::Object(extra)) = (&mut o, extra) {
            o.extend(extra);
        }
        o
    };
    paths.insert(
        format!("/api/{}/", t.api_path),
        json!({
            "get": op("list", json!({"parameters": list_parameters(t), "responses": responses("200", Some(json!({"$ref": format!("#/components/schemas/Paginated{name}List")})))})),
            "post": op("create", json!({"requestBody": body(one_or_many), "responses": created(t, json!({"oneOf": [one, many]}))})),
            "patch": op("bulk_partial_update", json!({"requestBody": body(id_list.clone()), "responses": responses("200", Some(many.clone()))})),
            "delete": op("bulk_destroy", json!({"requestBody": body(id_list), "responses": responses("204", None)})),
        }),
    );
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}]);
    paths.insert(
        format!("/api/{}/{{id}}/", t.api_path),
        json!({
            "parameters": id,
            "get": op("retrieve", json!({"responses": responses("200", Some(one.clone()))})),
            "put": op("update", json!({"requestBody": body(writable.clone()), "responses": responses("200", Some(one.clone()))})),
            "patch": op("partial_update", json!({"requestBody": body(json!({"type": "object"})), "responses": responses("200", Some(one))})),
            "delete": op("destroy", json!({"responses": responses("204", None)})),
        }),
    );
}

/// Herald's own lists beside the inventory, for reading: each list with every filter it takes
/// (what pynetbox's `strict_filters` checks), and each record. `(path, schema name, filters)`.
fn record_paths(paths: &mut Map<String, Value>, schemas: &mut Map<String, Value>) {
    use crate::service::filters::Spec;
    let lists: [(&str, &str, &Spec); 4] = [
        ("extras/webhooks", "Webhook", &crate::service::WEBHOOK_FILTERS),
        ("extras/event-rules", "EventRule", &crate::service::EVENT_RULE_FILTERS),
        ("extras/deliveries", "Delivery", &crate::service::DELIVERY_FILTERS),
        ("extras/object-changes", "ObjectChange", &crate::service::CHANGE_FILTERS),
    ];
    for (path, name, spec) in lists {
        schemas.insert(
            name.into(),
            json!({"type": "object", "required": ["id", "url", "display"],
                   "properties": {"id": {"type": "integer"}, "url": {"type": "string"}, "display": {"type": "string"}}}),
        );
        let one = json!({"$ref": format!("#/components/schemas/{name}")});
        let page = json!({"type": "object", "required": ["count", "results"], "properties": {
            "count": {"type": "integer"},
            "next": {"type": "string", "nullable": true},
            "previous": {"type": "string", "nullable": true},
            "results": {"type": "array", "items": one},
        }});
        let mut parameters: Vec<Value> = spec
            .parameters()
            .into_iter()
            .map(|(f, kind)| {
                json!({"name": f, "in": "query", "required": false,
                       "schema": {"type": "array", "items": kind.schema()}, "style": "form", "explode": true})
            })
            .collect();
        for p in ["limit", "offset"] {
            parameters.push(
                json!({"name": p, "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}}),
            );
        }
        let op_name = path.replace(['/', '-'], "_");
        paths.insert(
            format!("/api/{path}/"),
            json!({"get": {"operationId": format!("{op_name}_list"), "tags": ["extras"], "parameters": parameters,
                           "responses": responses("200", Some(page))}}),
        );
        paths.insert(
            format!("/api/{path}/{{id}}/"),
            json!({"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                   "get": {"operationId": format!("{op_name}_retrieve"), "tags": ["extras"],
                           "responses": responses("200", Some(one))}}),
        );
    }
}

/// The whole document.
pub fn document(catalog: &Catalog) -> Value {
    let mut schemas = Map::new();
    schemas.insert(
        "NestedObject".into(),
        json!({"type": "object", "nullable": true, "properties": {"id": {"type": "integer"}, "url": {"type": "string"}, "display_url": {"type": "string"}, "display": {"type": "string"}}}),
    );
    schemas.insert(
        "Error".into(),
        json!({"oneOf": [{"type": "object"}, {"type": "array"}]}),
    );
    let mut paths = Map::new();
    for t in catalog.types() {
        type_schemas(catalog, t, &mut schemas);
        type_paths(t, &mut paths);
    }
    record_paths(&mut paths, &mut schemas);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Herald",
            "version": format!("{} ({API_VERSION})", env!("CARGO_PKG_VERSION")),
            "description": "Herald's API: NetBox's REST shapes for the object types Herald stores, and its webhooks, event rules and deliveries (for reading).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"tokenAuth": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <key>`"}},
        },
        "security": [{"tokenAuth": []}],
    })
}
