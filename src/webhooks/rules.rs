//! A webhook's rules (NetBox's): reading a body over a webhook field by field, then the rules
//! that span fields or need the catalog or the file system. Whether its templates compile is
//! checked where compiling is bounded, in the sandbox (`service::webhooks`).

use super::{ca, conditions, headers, request, HttpMethod, Webhook, FIELDS};
use crate::catalog::Catalog;
use std::path::Path;

/// Longest template a webhook keeps, in bytes: every process of a fleet holds every webhook.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// What a webhook is checked against besides its own fields.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub catalog: &'a Catalog,
    /// Where CA files must be, when the operator says.
    pub ca_dir: Option<&'a Path>,
}
use crate::validate::{refuse_unknown_keys, FieldErrors, Reader};

use serde_json::Value;

impl Webhook {
    /// Applies the fields present in `body` over `self` (all of them for create and PUT, the
    /// given ones for PATCH), then checks every rule but the templates'. Errors name their
    /// fields.
    pub fn apply(self, body: &Value, rules: Rules<'_>, partial: bool) -> Result<Webhook, FieldErrors> {
        let (webhook, errors) = self.read(body, rules, partial)?;
        errors.finish(webhook)
    }

    /// `apply`, giving back the webhook as read with the errors found (for more checks to add
    /// theirs); an error only when `body` is not an object.
    pub fn read(
        mut self,
        body: &Value,
        rules: Rules<'_>,
        partial: bool,
    ) -> Result<(Webhook, FieldErrors), FieldErrors> {
        let mut r = Reader::new(body)?;
        self.read_request(&mut r);
        self.read_delivery(&mut r);
        r.empty_custom_fields();
        let mut errors = std::mem::take(&mut r.errors);
        // `has_secret` is shown, never written: ignored as read-only.
        refuse_unknown_keys(
            body,
            |k| FIELDS.contains(&k) || ["has_secret", "custom_fields"].contains(&k),
            "webhooks",
            &mut errors,
        );
        if !partial {
            for field in ["name", "payload_url"] {
                if !r.has(field) && !errors.0.contains_key(field) {
                    errors.add(field, "This field is required.");
                }
            }
        }
        // Enabled (again): what disabled it no longer holds.
        if self.enabled {
            self.disabled_reason.clear();
            self.disabled_at = None;
        }
        self.check(rules, &mut errors);
        Ok((self, errors))
    }

    /// What fires the webhook and the request it sends.
    fn read_request(&mut self, r: &mut Reader<'_>) {
        if let Some(v) = r.string("name") {
            self.name = v.trim().to_string();
        }
        if let Some(v) = r.nullable_string("description") {
            self.description = v.unwrap_or_default().trim().to_string();
        }
        if let Some(v) = r.string_set("content_types") {
            self.content_types = v;
        }
        for (field, slot) in [
            ("type_create", &mut self.type_create),
            ("type_update", &mut self.type_update),
            ("type_delete", &mut self.type_delete),
            ("enabled", &mut self.enabled),
            ("ssl_verification", &mut self.ssl_verification),
        ] {
            if let Some(v) = r.bool(field) {
                *slot = v;
            }
        }
        if let Some(v) = r.string("payload_url") {
            self.payload_url = v.trim().to_string();
        }
        if let Some(v) = r.string("http_method") {
            match HttpMethod::parse(&v) {
                Some(m) => self.http_method = m,
                None => r.errors.add(
                    "http_method",
                    format!(
                        "\"{v}\" is not a valid choice: use one of {}.",
                        HttpMethod::ALL.map(HttpMethod::as_str).join(", ")
                    ),
                ),
            }
        }
        if let Some(v) = r.string("http_content_type") {
            self.http_content_type = v.trim().to_string();
        }
        if let Some(v) = r.nullable_string("additional_headers") {
            self.additional_headers = v.unwrap_or_default();
        }
        if let Some(v) = r.nullable_string("body_template") {
            self.body_template = v.unwrap_or_default();
        }
        if let Some(v) = r.nullable_string("secret") {
            self.secret = v.unwrap_or_default();
        }
        if let Some(v) = r.nullable_string("ca_file_path") {
            self.ca_file_path = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        }
    }

    /// How deliveries go: timeout, retries, conditions.
    fn read_delivery(&mut self, r: &mut Reader<'_>) {
        if let Some(v) = r.int("timeout", 1, 3600) {
            self.timeout = v as u32;
        }
        match r.raw("retry_schedule") {
            None => {}
            Some(Value::Null) => self.retry_schedule = None,
            Some(Value::Array(items)) => {
                let secs: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
                if secs.len() != items.len() || secs.iter().any(|s| !s.is_finite() || *s < 0.0 || *s > 604_800.0) {
                    r.errors.add(
                        "retry_schedule",
                        "Expected a list of delays in seconds, each from 0 to 604800.",
                    );
                } else if secs.len() > 50 {
                    r.errors.add("retry_schedule", "At most 50 retries.");
                } else {
                    self.retry_schedule = Some(secs);
                }
            }
            Some(_) => r
                .errors
                .add("retry_schedule", "Expected a list of delays in seconds, or null."),
        }
        match r.raw("rate_limit") {
            None => {}
            Some(Value::Null) => self.rate_limit = None,
            Some(v) => match v.as_f64() {
                Some(rate) if rate.is_finite() && rate > 0.0 && rate <= 100_000.0 => self.rate_limit = Some(rate),
                _ => r.errors.add(
                    "rate_limit",
                    "Expected requests per second, more than 0 and at most 100000 (decimals allowed), or null.",
                ),
            },
        }
        if let Some(v) = r.bool("ordered") {
            self.ordered = v;
        }
        if let Some(v) = r.bool("batch") {
            self.batch = v;
        }
        if let Some(v) = r.string("signature_scheme") {
            match super::signature::Scheme::parse(&v) {
                Some(s) => self.signature_scheme = s,
                None => r.errors.add(
                    "signature_scheme",
                    format!("\"{v}\" is not a valid choice: use netbox, standard or both."),
                ),
            }
        }
        match r.raw("conditions") {
            None => {}
            Some(Value::Null) => self.conditions = None,
            Some(c) => match conditions::Conditions::parse(c) {
                Ok(_) => self.conditions = Some(c.clone()),
                Err(e) => r.errors.add("conditions", format!("Invalid condition set: {e}.")),
            },
        }
    }

    /// The rules that span fields, and those that need the catalog or the file system.
    fn check(&self, rules: Rules<'_>, errors: &mut FieldErrors) {
        let catalog = rules.catalog;
        let has = |e: &FieldErrors, f: &str| e.0.contains_key(f);
        errors.check_name_and_description(&self.name, &self.description);
        // Its own triggers are types and events together, or neither: a webhook with neither
        // fires only through the event rules that point at it (NetBox 3.7 and later).
        let fires_on_events = self.type_create || self.type_update || self.type_delete;
        if !has(errors, "content_types") {
            if self.content_types.is_empty() && fires_on_events {
                errors.add(
                    "content_types",
                    "Choose the object types whose events fire it, or clear type_create, type_update and type_delete so that only event rules fire it.",
                );
            }
            super::check_event_types(catalog, "content_types", &self.content_types, errors);
        }
        if !self.content_types.is_empty() && !fires_on_events {
            errors.add(
                "type_create",
                "You must select at least one type: create, update, and/or delete.",
            );
        }
        if !has(errors, "payload_url") {
            if let Err(msg) = check_payload_url(&self.payload_url) {
                errors.add("payload_url", msg);
            }
        }
        if !has(errors, "http_content_type") {
            if self.http_content_type.is_empty() {
                errors.add("http_content_type", "This field may not be blank.");
            } else if self.http_content_type.chars().any(char::is_control) || self.http_content_type.len() > 100 {
                errors.add(
                    "http_content_type",
                    "Must be a MIME type of at most 100 characters, on one line.",
                );
            }
        }
        for (field, text) in [
            ("additional_headers", &self.additional_headers),
            ("body_template", &self.body_template),
        ] {
            if text.len() > MAX_TEMPLATE_BYTES && !has(errors, field) {
                errors.add(
                    field,
                    format!("Ensure this field has no more than {MAX_TEMPLATE_BYTES} bytes."),
                );
            }
        }
        if let Err(msg) = headers::check_source(&self.additional_headers) {
            errors.add("additional_headers", msg);
        }
        if self.secret.chars().count() > 255 {
            errors.add("secret", "Ensure this field has no more than 255 characters.");
        } else if self.signature_scheme != super::signature::Scheme::NetBox {
            if let Err(msg) = super::signature::standard_key(&self.secret) {
                errors.add("secret", format!("Standard Webhooks signing: {msg}."));
            }
        }
        if self.ordered && self.batch {
            errors.add(
                "batch",
                "A batched webhook cannot be ordered too: a batch holds many objects. Choose one.",
            );
        }

        if let Some(path) = &self.ca_file_path {
            if !self.ssl_verification {
                errors.add(
                    "ca_file_path",
                    "Do not specify a CA certificate file if SSL verification is disabled.",
                );
            } else if let Err(msg) = ca::read(path, rules.ca_dir) {
                errors.add("ca_file_path", msg);
            }
        }
    }
}

/// An `http(s)` URL with a host, of at most 500 characters (NetBox's); when it holds a template,
/// it must start with the scheme (and compile, which the sandbox checks).
fn check_payload_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("This field may not be blank.".into());
    }
    if url.chars().count() > 500 {
        return Err("Ensure this field has no more than 500 characters.".into());
    }
    if request::is_template(url) {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err("Enter a valid URL: it must start with http:// or https://.".into());
        }
        return Ok(());
    }
    check_url(url)
}

/// A plain `http(s)` URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Enter a valid URL ({e})."))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "Enter a valid URL: scheme \"{}\" is not http or https.",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("Enter a valid URL: it has no host.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_name_their_fields() {
        let c = Catalog::builtin();
        let body = json!({
            "name": "x", "content_types": ["dcim.site"], "payload_url": "ftp://h/",
            "http_method": "FETCH", "ssl_verification": false,
            "ca_file_path": "/etc/hostname"
        });
        let rules = Rules {
            catalog: &c,
            ca_dir: None,
        };
        let err = Webhook::blank().apply(&body, rules, false).unwrap_err().into_value();
        for f in ["type_create", "payload_url", "http_method", "ca_file_path"] {
            assert!(err.get(f).is_some(), "{f} missing in {err}");
        }
        let ok = json!({"name": "a", "content_types": ["dcim.site"], "type_create": true,
                        "payload_url": "https://h/{{ model }}"});
        let w = Webhook::blank().apply(&ok, rules, false).unwrap();
        assert_eq!((w.http_method, w.timeout), (HttpMethod::Post, 15));
        let patched = w.clone().apply(&json!({"timeout": 0}), rules, true).unwrap_err();
        assert!(patched.0.contains_key("timeout"));
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        let too_long = w.apply(&json!({"body_template": long}), rules, true).unwrap_err();
        assert!(too_long.0.contains_key("body_template"));
    }
}
