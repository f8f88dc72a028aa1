//! Tags on webhooks and event rules: given as NetBox clients give them (an id, or
//! `{"id"|"name"|"slug": ...}`), kept as ids, shown as NetBox 4's brief tags.

use super::{Error, Result, Services};
use crate::objects::query::ObjectQuery;
use crate::objects::view::{view, Related, TAG_TYPE};
use serde_json::Value;
use std::collections::HashMap;

impl Services {
    /// The ids of the tags a webhook or event rule body gives (`None` when it has no `tags`);
    /// a tag that does not exist is a 400 naming `tags`.
    pub(super) async fn resolve_tags(&self, body: &Value) -> Result<Option<Vec<i64>>> {
        let items = match body.get("tags") {
            None => return Ok(None),
            Some(Value::Null) => return Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(Error::field("tags", "Expected a list of tags.")),
        };
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            let by = match item {
                Value::Number(_) => Some(("id", item)),
                Value::Object(m) => ["id", "name", "slug"]
                    .into_iter()
                    .find_map(|k| m.get(k).map(|v| (k, v))),
                _ => None,
            };
            let Some((field, value)) = by else {
                return Err(Error::field(
                    "tags",
                    "Give each tag as its id or as {\"name\": ...}, {\"slug\": ...} or {\"id\": ...}.",
                ));
            };
            let found = match (field, value.as_i64()) {
                ("id", Some(id)) => self.store.get_objects(TAG_TYPE, &[id]).await?,
                ("id", None) => Vec::new(),
                _ => {
                    let query = ObjectQuery::field_in(field, vec![value.clone()]);
                    self.store.list_objects(TAG_TYPE, &query, 2, 0).await?.items
                }
            };
            match found.as_slice() {
                [tag] => ids.push(tag.id),
                _ => {
                    return Err(Error::field(
                        "tags",
                        format!("Related object not found using the provided attributes: {{'{field}': {value}}}"),
                    ))
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(Some(ids))
    }

    /// The tags with these ids that exist, in NetBox 4's brief form, `url`s under `base`.
    pub async fn tag_briefs(&self, ids: &[i64], base: &str) -> Result<HashMap<i64, Value>> {
        let Some(ty) = self.catalog.get(TAG_TYPE) else {
            return Ok(HashMap::new());
        };
        let mut wanted = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let objs = self.store.get_objects(TAG_TYPE, &wanted).await?;
        let related = Related::new();
        Ok(objs
            .iter()
            .map(|o| {
                let mut v = view(&self.catalog, ty, o, &related, true);
                crate::objects::absolutize(&mut v, base);
                (o.id, v)
            })
            .collect())
    }
}
