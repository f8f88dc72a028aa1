//! The catalog of object types: which `app_label.model` types exist, where their API lives,
//! and a sample object of each. Data, not code: see `types.toml`.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

const BUILTIN: &str = include_str!("types.toml");

/// One object type, e.g. `dcim.site`.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectType {
    pub app_label: String,
    pub model: String,
    pub verbose_name: String,
    /// Path under `/api/`, without slashes at the ends: `dcim/sites`.
    pub api_path: String,
    /// An object as the REST API shows it.
    #[serde(deserialize_with = "sample_from_toml")]
    pub sample: Value,
}

impl ObjectType {
    /// `app_label.model`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.app_label, self.model)
    }
}

/// Every object type Herald knows.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: Vec<ObjectType>,
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct CatalogFile {
    types: Vec<ObjectType>,
}

impl Catalog {
    /// The catalog shipped in the binary.
    pub fn builtin() -> Catalog {
        Catalog::from_toml(BUILTIN).expect("the built-in catalog is valid TOML")
    }

    /// Parses a catalog written in the format of `types.toml`.
    pub fn from_toml(text: &str) -> Result<Catalog, toml::de::Error> {
        let file: CatalogFile = toml::from_str(text)?;
        let index = file.types.iter().enumerate().map(|(i, t)| (t.name(), i)).collect();
        Ok(Catalog {
            types: file.types,
            index,
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

    /// The type whose model name is `model` (`site`), when exactly one has it.
    pub fn by_model(&self, model: &str) -> Option<&ObjectType> {
        let mut found = self.types.iter().filter(|t| t.model == model);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
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
        assert_eq!(c.by_model("ipaddress").unwrap().name(), "ipam.ipaddress");
    }
}
