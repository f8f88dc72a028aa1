//! A page's query string: its filters, its page of a list, and links to the other pages that
//! keep the filters.

use super::render::Failure;
use crate::error::Error;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{json, Value};

/// Rows a list shows unless told otherwise, and the most it shows.
pub const PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 1000;

/// The query string's pairs, in order.
pub struct Query(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Query, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(Query(form_urlencoded::parse(q.as_bytes()).into_owned().collect()))
    }
}

impl Query {
    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every non-empty value of `name` as a whole number; anything else is an error naming it.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>, Error> {
        self.all(name)
            .iter()
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| Error::field(name, format!("\"{v}\" is not a whole number.")))
            })
            .collect()
    }

    /// The filters given, for a list's filter spec to read.
    pub fn given(&self) -> crate::service::filters::Given {
        crate::service::filters::Given::pairs(self.filters())
    }

    /// The pairs that filter, without paging and empty values.
    pub fn filters(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, v)| !v.is_empty() && k != "page" && k != "per_page")
            .cloned()
            .collect()
    }

    /// The filters as an object of their values, for a filter form to show.
    pub fn filter_values(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.filters()
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        )
    }

    /// `(limit, offset)` from `page` (from 1) and `per_page`.
    pub fn page(&self) -> Result<(i64, i64), Error> {
        let number = |name: &str, default: i64| -> Result<i64, Error> {
            match self.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::field(name, format!("\"{v}\" is not a page number."))),
            }
        };
        let per_page = number("per_page", PER_PAGE)?.min(MAX_PER_PAGE);
        let page = number("page", 1)?;
        Ok((per_page, (page - 1).saturating_mul(per_page)))
    }

    /// The filters as a query string (`a=1&b=2`), for links and hidden fields.
    pub fn encoded(&self) -> String {
        encode(&self.filters())
    }

    /// What a list's paginator shows: the range, the count and links to the pages around.
    /// A count that reached `at_most` (where counting stopped) means "at least": the pages go
    /// on past it.
    pub fn paginator(&self, count: i64, limit: i64, offset: i64, at_most: Option<i64>) -> Value {
        let more = at_most.is_some_and(|m| count >= m);
        let count = if more { count.max(offset + limit + 1) } else { count };
        let pages = if count == 0 { 1 } else { (count + limit - 1) / limit };
        let current = offset / limit + 1;
        let link = |page: i64| {
            let mut pairs = self.filters();
            if limit != PER_PAGE {
                pairs.push(("per_page".into(), limit.to_string()));
            }
            pairs.push(("page".into(), page.to_string()));
            format!("?{}", encode(&pairs))
        };
        let mut shown: Vec<i64> = vec![1, current - 2, current - 1, current, current + 1, current + 2, pages];
        shown.retain(|p| (1..=pages).contains(p));
        shown.sort_unstable();
        shown.dedup();
        let mut links = Vec::new();
        let mut last = 0;
        for p in shown {
            if p > last + 1 {
                links.push(json!({"gap": true}));
            }
            links.push(json!({"page": p, "url": link(p), "current": p == current}));
            last = p;
        }
        let shown = if more {
            format!("more than {}", thousands(at_most.unwrap_or(count)))
        } else {
            thousands(count)
        };
        json!({
            "count": shown,
            "first": if count == 0 { 0 } else { offset + 1 },
            "last": (offset + limit).min(count),
            "pages": links,
            "previous": (current > 1).then(|| link(current - 1)),
            "next": (current < pages).then(|| link(current + 1)),
        })
    }
}

/// `12345` as `12,345`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Pairs as a query string.
pub fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

/// A path id, by the API's rule; anything else is no such page.
pub fn path_id(id: &str) -> Result<i64, Failure> {
    crate::api::path_id(id).ok_or(Failure(Error::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query(form_urlencoded::parse(s.as_bytes()).into_owned().collect())
    }

    #[test]
    fn pages_keep_the_filters() {
        let query = q("status=failed&page=3&webhook_id=2&q=");
        assert_eq!(query.page().unwrap(), (50, 100));
        let p = query.paginator(1000, 50, 100, None);
        assert_eq!(p["first"], 101);
        assert_eq!(p["last"], 150);
        assert_eq!(p["previous"], "?status=failed&webhook_id=2&page=2");
        let pages: Vec<i64> = p["pages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["page"].as_i64())
            .collect();
        assert_eq!(pages, [1, 2, 3, 4, 5, 20]);
        assert!(q("page=0").page().is_err());
        assert!(q("per_page=x").page().is_err());
        assert_eq!(q("").paginator(0, 50, 0, None)["first"], 0);
        assert_eq!(q("").paginator(1234, 50, 0, None)["count"], "1,234");
        // Counting stopped at 10,000: the pages go on.
        let capped = q("page=300").paginator(10_000, 50, 14_950, Some(10_000));
        assert_eq!(capped["count"], "more than 10,000");
        assert!(capped["next"].is_string());
    }
}
