//! The catalog of object types: which `app_label.model` types exist, where their API lives,
//! their fields and rules, and a sample object of each. Data, not code: see `types.toml`.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// The built-in catalog, as TOML.
pub const BUILTIN: &str = include_str!("types.toml");

/// The object types a NetBox (2.10 to 4.6) sends events for: `netbox_types.txt`.
const NETBOX_TYPES: &str = include_str!("netbox_types.txt");

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    Integer,
    Decimal,
    Boolean,
    Choice,
    Fk,
    Prefix,
    Address,
    Mac,
    /// Read-only: the IP family (4 or 6) of another field.
    Family,
}

/// What deleting a referenced object does to the objects that point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// The delete is refused (409) while they exist.
    Protect,
    /// They are deleted too, each with its own change.
    Cascade,
    /// Their reference is cleared.
    SetNull,
}

/// A name as a label: underscores as spaces, the first letter in capitals (`mac_address` →
/// "Mac address", `device types` → "Device types").
pub fn label(name: &str) -> String {
    let text = name.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// One field of an object type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub null: bool,
    pub max_length: Option<usize>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub places: Option<u32>,
    pub pattern: Option<String>,
    pub pattern_message: Option<String>,
    /// The choice set (`choice` fields).
    pub choices: Option<String>,
    /// The referenced type (`fk` fields).
    pub to: Option<String>,
    pub on_delete: Option<OnDelete>,
    #[serde(default, deserialize_with = "optional_from_toml")]
    pub default: Option<Value>,
    /// The field a `family` is computed from.
    pub from: Option<String>,
    #[serde(default)]
    pub tree: bool,
    #[serde(skip)]
    pub regex: Option<Regex>,
}

impl Field {
    /// Whether clients may write it.
    pub fn writable(&self) -> bool {
        self.kind != FieldKind::Family
    }

    /// Its value when a create does not give it.
    pub fn default_value(&self) -> Value {
        match (&self.default, self.kind) {
            (Some(v), _) => v.clone(),
            (None, FieldKind::String) if !self.null => Value::from(""),
            (None, FieldKind::Boolean) => Value::Bool(false),
            _ => Value::Null,
        }
    }
}

/// One object type, e.g. `dcim.site`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectType {
    pub app_label: String,
    pub model: String,
    pub verbose_name: String,
    /// Path under `/api/`, without slashes at the ends: `dcim/sites`.
    pub api_path: String,
    /// How the object is named in `display`: `{field}`s replaced by their values.
    pub display: String,
    /// How it is named when `display` comes out empty (an unnamed device); `{fk.field}` paths
    /// follow foreign keys.
    #[serde(default)]
    pub display_fallback: Option<String>,
    /// Fields a nested (brief) reference shows besides `id`, `url` and `display`.
    pub brief: Vec<String>,
    /// Fields `q=` searches.
    pub search: Vec<String>,
    /// The default ordering of lists.
    pub ordering: Vec<String>,
    /// Sets of fields whose values together must be unique.
    pub unique: Vec<Vec<String>>,
    /// Whether objects carry tags (and custom fields).
    pub tags: bool,
    pub fields: Vec<Field>,
    /// An object as the REST API shows it.
    #[serde(deserialize_with = "sample_from_toml")]
    pub sample: Value,
    /// Worked out once, when the catalog is loaded.
    #[serde(skip)]
    display_fks: Vec<String>,
    /// `app_label.model`, put together once when the catalog is loaded.
    #[serde(skip)]
    name: String,
}

impl ObjectType {
    /// Foreign keys the display formats follow (`device_type` in `{device_type.model}`).
    pub fn display_fks(&self) -> &[String] {
        &self.display_fks
    }

    fn find_display_fks(&self) -> Vec<String> {
        std::iter::once(&self.display)
            .chain(&self.display_fallback)
            .flat_map(|f| display_parts(f))
            .filter_map(|p| match p {
                DisplayPart::Field(f) => f.split_once('.').map(|(fk, _)| fk.to_string()),
                DisplayPart::Text(_) => None,
            })
            .collect()
    }

    /// `app_label.model`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The human name in the plural: "IP addresses", "prefixes", "device types".
    pub fn plural(&self) -> String {
        let name = &self.verbose_name;
        if name.ends_with('s') || name.ends_with('x') {
            format!("{name}es")
        } else {
            format!("{name}s")
        }
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every object type Herald knows, and the choice sets their fields use.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: Vec<ObjectType>,
    index: HashMap<String, usize>,
    choices: HashMap<String, Vec<(String, String)>>,
    /// Every type an event may be of: NetBox's and the catalog's, sorted.
    event_types: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    choices: HashMap<String, Vec<(String, String)>>,
    types: Vec<ObjectType>,
}

impl Catalog {
    /// The catalog shipped in the binary.
    pub fn builtin() -> Catalog {
        Catalog::from_toml(BUILTIN).expect("the built-in catalog is valid")
    }

    /// Parses and checks a catalog written in the format of `types.toml`.
    pub fn from_toml(text: &str) -> anyhow::Result<Catalog> {
        let mut file: CatalogFile = toml::from_str(text)?;
        for t in &mut file.types {
            t.name = format!("{}.{}", t.app_label, t.model);
        }
        let index: HashMap<String, usize> = file
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        anyhow::ensure!(index.len() == file.types.len(), "a type is listed twice");
        for t in &mut file.types {
            t.display_fks = t.find_display_fks();
            let name = t.name.clone();
            for f in &mut t.fields {
                if let Some(p) = &f.pattern {
                    f.regex = Some(Regex::new(p).map_err(|e| anyhow::anyhow!("{name}.{}: bad pattern: {e}", f.name))?);
                }
            }
        }
        for t in &file.types {
            check_type(t, &index, &file.choices)?;
        }
        let mut event_types: Vec<String> = NETBOX_TYPES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .chain(file.types.iter().map(|t| t.name.clone()))
            .collect();
        event_types.sort();
        event_types.dedup();
        Ok(Catalog {
            types: file.types,
            index,
            choices: file.choices,
            event_types,
        })
    }

    /// The type named `app_label.model`.
    pub fn get(&self, name: &str) -> Option<&ObjectType> {
        self.index.get(name).map(|&i| &self.types[i])
    }

    /// All types, in catalog order.
    pub fn types(&self) -> &[ObjectType] {
        &self.types
    }

    /// Every object type an event may be of (what webhooks and event rules may subscribe to,
    /// and what the relay accepts): NetBox's types and the catalog's, sorted.
    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    /// Whether events of `name` (`app_label.model`) can be recorded.
    pub fn is_event_type(&self, name: &str) -> bool {
        self.event_types.binary_search_by(|t| t.as_str().cmp(name)).is_ok()
    }

    /// The event type whose model is `model` (`rack` gives `dcim.rack`), when exactly one has it.
    pub fn event_type_of_model(&self, model: &str) -> Option<&str> {
        let mut found = self
            .event_types
            .iter()
            .filter(|t| t.split_once('.').is_some_and(|(_, m)| m == model));
        let first = found.next()?;
        found.next().is_none().then_some(first.as_str())
    }

    /// The app label and the human name of an event type: the catalog's verbose name for its
    /// own types, the model name for the others.
    pub fn event_type_label<'a>(&'a self, name: &'a str) -> (&'a str, &'a str) {
        match self.get(name) {
            Some(t) => (t.app_label.as_str(), t.verbose_name.as_str()),
            None => name.split_once('.').unwrap_or(("", name)),
        }
    }

    /// The `(value, label)` pairs of a choice set.
    pub fn choices(&self, set: &str) -> &[(String, String)] {
        self.choices.get(set).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The label of `value` in a choice field's set.
    pub fn choice_label(&self, field: &Field, value: &str) -> Option<&str> {
        let set = field.choices.as_deref()?;
        self.choices(set)
            .iter()
            .find(|(v, _)| v == value)
            .map(|(_, l)| l.as_str())
    }
}

fn check_type(
    t: &ObjectType,
    index: &HashMap<String, usize>,
    choices: &HashMap<String, Vec<(String, String)>>,
) -> anyhow::Result<()> {
    let name = t.name();
    let known = |f: &str| t.field(f).is_some() || f == "id";
    for part in [&t.app_label, &t.model] {
        anyhow::ensure!(is_identifier(part), "{name}: {part:?} is not a lower-case identifier");
    }
    for f in &t.fields {
        let at = format!("{name}.{}", f.name);
        // Names go into SQL as JSON paths: letters, digits and underscores only.
        anyhow::ensure!(is_identifier(&f.name), "{at}: a field name is a lower-case identifier");
        match f.kind {
            FieldKind::Fk => {
                let to =
                    f.to.as_deref()
                        .ok_or_else(|| anyhow::anyhow!("{at}: fk without `to`"))?;
                anyhow::ensure!(index.contains_key(to), "{at}: unknown type {to}");
                anyhow::ensure!(f.on_delete.is_some(), "{at}: fk without `on_delete`");
                anyhow::ensure!(!f.tree || to == name, "{at}: a tree field must point at its own type");
            }
            FieldKind::Choice => {
                let set = f.choices.as_deref().unwrap_or("");
                let values = choices
                    .get(set)
                    .ok_or_else(|| anyhow::anyhow!("{at}: unknown choice set {set:?}"))?;
                if let Some(Value::String(d)) = &f.default {
                    anyhow::ensure!(
                        values.iter().any(|(v, _)| v == d),
                        "{at}: default {d:?} is not a choice"
                    );
                }
            }
            FieldKind::Family => {
                let from = f.from.as_deref().and_then(|s| t.field(s));
                anyhow::ensure!(
                    from.is_some_and(|s| matches!(s.kind, FieldKind::Address | FieldKind::Prefix)),
                    "{at}: `from` must name an address or prefix field"
                );
            }
            _ => {}
        }
    }
    for list in [&t.brief, &t.search, &t.ordering] {
        for f in list {
            anyhow::ensure!(known(f), "{name}: unknown field {f}");
        }
    }
    for rule in &t.unique {
        for f in rule {
            anyhow::ensure!(t.field(f).is_some(), "{name}: unique rule names unknown field {f}");
        }
    }
    for format in std::iter::once(&t.display).chain(&t.display_fallback) {
        for part in display_parts(format) {
            if let DisplayPart::Field(f) = part {
                let first = f.split('.').next().unwrap_or_default();
                anyhow::ensure!(known(first), "{name}: display names unknown field {first}");
                anyhow::ensure!(
                    !f.contains('.') || t.field(first).is_some_and(|x| x.kind == FieldKind::Fk),
                    "{name}: display path {f} must start with a foreign key"
                );
            }
        }
    }
    Ok(())
}

/// `[a-z_][a-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A piece of a `display` format.
pub enum DisplayPart<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// Splits `"{name} ({vid})"` into text and field pieces.
pub fn display_parts(format: &str) -> Vec<DisplayPart<'_>> {
    let mut parts = Vec::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        if open > 0 {
            parts.push(DisplayPart::Text(&rest[..open]));
        }
        parts.push(DisplayPart::Field(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(DisplayPart::Text(rest));
    }
    parts
}

fn optional_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    let value = toml::Value::deserialize(d)?;
    Ok(Some(toml_to_json(value)))
}

fn sample_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let value = toml::Value::deserialize(d)?;
    Ok(toml_to_json(value))
}

/// TOML has no null; an empty table stands for it.
fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) if t.is_empty() => Value::Null,
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_netbox_types() {
        let c = Catalog::builtin();
        for name in [
            "dcim.site",
            "dcim.region",
            "dcim.device",
            "dcim.devicetype",
            "dcim.devicerole",
            "dcim.manufacturer",
            "dcim.interface",
            "ipam.ipaddress",
            "ipam.prefix",
            "ipam.vlan",
            "tenancy.tenant",
            "extras.tag",
        ] {
            let t = c.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(
                t.sample["url"].as_str().unwrap(),
                format!("/api/{}/{}/", t.api_path, t.sample["id"])
            );
        }
        assert!(c.get("dcim.nothing").is_none());
        assert_eq!(c.get("dcim.site").unwrap().sample["tenant"], Value::Null);
        assert_eq!(c.event_type_of_model("ipaddress"), Some("ipam.ipaddress"));
        assert_eq!(c.event_type_of_model("rack"), Some("dcim.rack"));
        assert_eq!(c.event_type_of_model("nothing"), None);
        // Every type of the catalog is an event type, and NetBox's others too.
        assert!(c.types().iter().all(|t| c.is_event_type(t.name())));
        assert!(c.is_event_type("vpn.tunnel") && !c.is_event_type("dcim.nothing"));
        let site = c.get("dcim.site").unwrap();
        assert_eq!(site.field("status").unwrap().default_value(), Value::from("active"));
        assert_eq!(
            c.choice_label(site.field("status").unwrap(), "planned"),
            Some("Planned")
        );
        let protected: Vec<String> = c
            .types()
            .iter()
            .flat_map(|t| t.fields.iter().map(move |f| (t, f)))
            .filter(|(_, f)| f.to.as_deref() == Some("dcim.site") && f.on_delete == Some(OnDelete::Protect))
            .map(|(t, f)| format!("{}.{}", t.name(), f.name))
            .collect();
        assert_eq!(protected, ["dcim.device.site", "ipam.prefix.site", "ipam.vlan.site"]);
    }

    #[test]
    fn samples_have_the_fields_of_their_type_in_rest_order() {
        for t in Catalog::builtin().types() {
            let keys: Vec<&str> = t.sample.as_object().unwrap().keys().map(String::as_str).collect();
            let mut want = vec!["id", "url", "display"];
            want.extend(t.fields.iter().map(|f| f.name.as_str()));
            if t.tags {
                want.extend(["tags", "custom_fields"]);
            }
            want.extend(["created", "last_updated"]);
            assert_eq!(keys, want, "{}", t.name());
        }
    }

    #[test]
    fn a_catalog_with_a_broken_rule_is_refused() {
        let base = r#"
[choices]
s = [["a", "A"]]

[[types]]
app_label = "x"
model = "thing"
verbose_name = "thing"
api_path = "x/things"
display = "{name}"
brief = ["name"]
search = ["name"]
ordering = ["name"]
unique = [["name"]]
tags = false
fields = [ { name = "name", type = "string" }, FIELD ]
sample = {}
"#;
        let ok = base.replace(
            "FIELD",
            r#"{ name = "state", type = "choice", choices = "s", default = "a" }"#,
        );
        assert!(Catalog::from_toml(&ok).is_ok());
        for (field, says) in [
            (
                r#"{ name = "owner", type = "fk", to = "x.nobody", on_delete = "protect" }"#,
                "unknown type",
            ),
            (r#"{ name = "owner", type = "fk", to = "x.thing" }"#, "on_delete"),
            (
                r#"{ name = "state", type = "choice", choices = "t" }"#,
                "unknown choice set",
            ),
            (
                r#"{ name = "state", type = "choice", choices = "s", default = "b" }"#,
                "not a choice",
            ),
            (
                r#"{ name = "family", type = "family", from = "name" }"#,
                "address or prefix",
            ),
            (r#"{ name = "code", type = "string", pattern = "(" }"#, "bad pattern"),
            (r#"{ name = "code", type = "text" }"#, "unknown variant"),
        ] {
            let err = Catalog::from_toml(&base.replace("FIELD", field))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{field}: {err}");
        }
        let err = Catalog::from_toml(&ok.replace(r#"search = ["name"]"#, r#"search = ["nom"]"#)).unwrap_err();
        assert!(err.to_string().contains("unknown field nom"), "{err}");
        let err = Catalog::from_toml(&ok.replace(r#"display = "{name}""#, r#"display = "{name.first}""#)).unwrap_err();
        assert!(err.to_string().contains("must start with a foreign key"), "{err}");
    }
}
