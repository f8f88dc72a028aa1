//! Extras › Webhooks: the list with each webhook's recent health, the detail with a test send,
//! and the add/edit form with a preview of the request. The form's fields become the REST
//! API's JSON body and go through the same service calls, so its errors are the API's.

use super::query::Query;
use super::render::{iso, Failure};
use super::session::{redirect_with, Fields};
use super::viewer::{Posted, Viewer};
use crate::api::AppState;
use crate::error::Error;
use crate::queue::DeliveryFilter;
use crate::service::WebhookFilter;
use crate::webhooks::{HttpMethod, Webhook};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/extras/webhooks/", get(list))
        .route("/extras/webhooks/add/", get(add_page).post(add))
        .route("/extras/webhooks/{id}/", get(detail))
        .route("/extras/webhooks/{id}/test/", axum::routing::post(test_send))
        .route("/extras/webhooks/{id}/edit/", get(edit_page).post(edit))
        .route("/extras/webhooks/{id}/delete/", get(delete_page).post(delete))
}

async fn list(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    let (limit, offset) = q.page()?;
    let filter = WebhookFilter::read(&q.given(), &[])?;
    let page = st.svc.webhooks(&v.actor, &filter, limit, offset).await?;
    let ids: Vec<i64> = page.items.iter().map(|w| w.id).collect();
    let health = st
        .svc
        .webhook_health(&v.actor, &ids, Utc::now() - Duration::hours(24))
        .await?;
    let rows: Vec<Value> = page
        .items
        .iter()
        .map(|w| {
            let h = health.get(&w.id).cloned().unwrap_or_default();
            let mut row = summary(w);
            row["failed_attempts"] = json!(h.failed_attempts);
            row["last"] = h.last.map_or(Value::Null, |d| {
                json!({"id": d.id, "status": d.status.as_str(), "label": d.status.label(), "at": iso(d.last_updated)})
            });
            row
        })
        .collect();
    let ctx = json!({
        "section": "webhooks",
        "webhooks": rows,
        "pages": q.paginator(page.count, limit, offset, None),
        "filters": q.filter_values(),
        "filtered": !q.filters().is_empty(),
        "types": super::views::type_options(&st, &q.all("content_types")),
        "methods": HttpMethod::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
    });
    Ok(v.page(&st, "webhooks.html", "Webhooks", ctx))
}

/// What lists and cards show of a webhook (never its secret).
fn summary(w: &Webhook) -> Value {
    let mut events = Vec::new();
    for (on, name) in [
        (w.type_create, "created"),
        (w.type_update, "updated"),
        (w.type_delete, "deleted"),
    ] {
        if on {
            events.push(name);
        }
    }
    json!({
        "id": w.id,
        "name": w.name,
        "description": w.description,
        "enabled": w.enabled,
        "content_types": w.content_types,
        "events": events,
        "http_method": w.http_method.as_str(),
        "payload_url": w.payload_url,
        "http_content_type": w.http_content_type,
        "additional_headers": w.additional_headers,
        "body_template": w.body_template,
        "has_secret": !w.secret.is_empty(),
        "ssl_verification": w.ssl_verification,
        "ca_file_path": w.ca_file_path,
        "timeout": w.timeout,
        // Seconds as people write them: 600, not 600.0.
        "retry_schedule": w.retry_schedule.as_ref().map(|s| s.iter().map(f64::to_string).collect::<Vec<_>>()),
        "conditions": w.conditions.as_ref().map(|c| serde_json::to_string_pretty(c).unwrap_or_default()),
        "rate_limit": w.rate_limit,
        "ordered": w.ordered,
        "batch": w.batch,
        "signature_scheme": w.signature_scheme.as_str(),
        "previous_secret_until": w.previous_secret_until.map(iso),
        "disabled_reason": (!w.disabled_reason.is_empty()).then_some(&w.disabled_reason),
        "disabled_at": w.disabled_at.map(iso),
        "created": iso(w.created),
        "last_updated": iso(w.last_updated),
    })
}

async fn detail_page(st: &AppState, v: &Viewer, id: i64, test: Option<Value>) -> Result<Response, Failure> {
    let w = st.svc.webhook(&v.actor, id).await?;
    let filter = DeliveryFilter {
        webhook_id: vec![id],
        ..DeliveryFilter::default()
    };
    // Those who may view webhooks but not deliveries see the webhook without them.
    let deliveries_shown = v
        .actor
        .can(crate::auth::permissions::types::DELIVERY, crate::auth::Action::View);
    let recent = if deliveries_shown {
        st.svc
            .deliveries(&v.actor, &filter, 10, 0, Some(super::COUNT_AT_MOST))
            .await?
    } else {
        crate::page::Page::new(0, Vec::new())
    };
    let deliveries: Vec<Value> = recent
        .items
        .iter()
        .map(|d| super::views::delivery_row(&st.svc.catalog, d))
        .collect();
    let rules = if v
        .actor
        .can(crate::auth::permissions::types::EVENT_RULE, crate::auth::Action::View)
    {
        let filter = crate::service::EventRuleFilter {
            action_object_id: vec![id],
            ..Default::default()
        };
        let page = st.svc.event_rules(&v.actor, &filter, 1000, 0).await?;
        page.items.iter().map(super::views::rule_summary).collect()
    } else {
        Vec::new()
    };
    let ctx = json!({
        "section": "webhooks",
        "webhook": summary(&w),
        "rules": rules,
        "deliveries": deliveries,
        "deliveries_shown": deliveries_shown,
        "delivery_count": super::render::count_text(recent.count, super::COUNT_AT_MOST),
        "test": test,
    });
    Ok(v.page(st, "webhook.html", &w.name, ctx))
}

async fn detail(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    detail_page(&st, &v, super::query::path_id(&id)?, None).await
}

/// Sends the webhook's request for a sample event now and shows what answered.
async fn test_send(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let id = super::query::path_id(&id)?;
    let w = st.svc.webhook(&p.viewer.actor, id).await?;
    let test = match st.svc.test_send(&p.viewer.actor, &w, None).await {
        Ok(attempt) => json!({"attempt": super::views::attempt(1, &attempt)}),
        Err(Error::Validation(e)) => json!({"error": crate::error::describe_fields(&e)}),
        Err(e) => return Err(e.into()),
    };
    detail_page(&st, &p.viewer, id, Some(test)).await
}

/// The form's values as the API's JSON body. Text that cannot be read as the type the API
/// wants is passed on as it is, so the API's own check names the field.
fn body_of(f: &Fields, editing: bool) -> Result<Value, Value> {
    let number_or_text = |s: &str| -> Value {
        let s = s.trim();
        s.parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(s))
    };
    let mut body = json!({
        "name": f.text("name").trim(),
        "description": f.text("description").trim(),
        "content_types": f.all("content_types"),
        "type_create": f.checked("type_create"),
        "type_update": f.checked("type_update"),
        "type_delete": f.checked("type_delete"),
        "enabled": f.checked("enabled"),
        "payload_url": f.text("payload_url").trim(),
        "http_method": f.text("http_method"),
        "http_content_type": f.text("http_content_type").trim(),
        "additional_headers": f.text("additional_headers").replace("\r\n", "\n"),
        "body_template": f.text("body_template").replace("\r\n", "\n"),
        "ssl_verification": f.checked("ssl_verification"),
        "ca_file_path": Some(f.text("ca_file_path").trim()).filter(|s| !s.is_empty()),
    });
    if !f.text("timeout").trim().is_empty() {
        body["timeout"] = number_or_text(f.text("timeout"));
    }
    let schedule = f.text("retry_schedule").trim();
    body["retry_schedule"] = if schedule.is_empty() {
        Value::Null
    } else {
        Value::Array(schedule.split(',').map(number_or_text).collect())
    };
    let rate = f.text("rate_limit").trim();
    body["rate_limit"] = if rate.is_empty() {
        Value::Null
    } else {
        number_or_text(rate)
    };
    body["ordered"] = json!(f.checked("ordered"));
    body["batch"] = json!(f.checked("batch"));
    body["signature_scheme"] = json!(f.text("signature_scheme"));
    let secret = f.text("secret");
    if !secret.is_empty() || !editing || f.checked("clear_secret") {
        body["secret"] = json!(secret);
    }
    let conditions = f.text("conditions").trim();
    body["conditions"] = if conditions.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(conditions).map_err(|e| json!({"conditions": [format!("Enter valid JSON: {e}.")]}))?
    };
    Ok(body)
}

/// What the form shows: the posted values, or the webhook's.
fn form_values(f: Option<&Fields>, w: &Webhook) -> Value {
    let Some(f) = f else {
        let mut v = summary(w);
        v["retry_schedule"] = json!(v["retry_schedule"].as_array().map(|s| s
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")));
        v["events"] = json!({"created": w.type_create, "updated": w.type_update, "deleted": w.type_delete});
        return v;
    };
    json!({
        "name": f.text("name"),
        "description": f.text("description"),
        "enabled": f.checked("enabled"),
        "events": {"created": f.checked("type_create"), "updated": f.checked("type_update"), "deleted": f.checked("type_delete")},
        "payload_url": f.text("payload_url"),
        "http_method": f.text("http_method"),
        "http_content_type": f.text("http_content_type"),
        "additional_headers": f.text("additional_headers"),
        "body_template": f.text("body_template"),
        "has_secret": !w.secret.is_empty(),
        "ssl_verification": f.checked("ssl_verification"),
        "ca_file_path": f.text("ca_file_path"),
        "timeout": f.text("timeout"),
        "retry_schedule": f.text("retry_schedule"),
        "conditions": f.text("conditions"),
        "rate_limit": f.text("rate_limit"),
        "ordered": f.checked("ordered"),
        "batch": f.checked("batch"),
        "signature_scheme": f.text("signature_scheme"),
        "event_id": f.text("event_id"),
        "secret_given": !f.text("secret").is_empty(),
        // What was typed stays typed through a preview or an error, so that saving next keeps
        // it (the page is never cached). A saved secret is never shown.
        "secret": f.text("secret"),
    })
}

/// The add or edit form, with errors and a preview when there are any.
fn form_page(st: &AppState, v: &Viewer, saved: Option<&Webhook>, shown: FormState) -> Response {
    let blank = Webhook::blank();
    let w = saved.unwrap_or(&blank);
    let chosen = match shown.fields {
        Some(f) => f.all("content_types"),
        None => w.content_types.clone(),
    };
    let title = match saved {
        Some(w) => format!("Editing webhook {}", w.name),
        None => "Add a new webhook".to_string(),
    };
    let errors = shown.errors.unwrap_or_else(|| json!({}));
    let status = if errors.as_object().is_some_and(|e| !e.is_empty()) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let ctx = json!({
        "section": "webhooks",
        "editing": saved.map(|w| json!({"id": w.id, "name": w.name})),
        "values": form_values(shown.fields, w),
        "errors": errors,
        "types": super::views::type_options(st, &chosen),
        "methods": HttpMethod::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "preview": shown.preview,
    });
    v.page_with(st, status, "webhook_form.html", &title, ctx)
}

/// What a form page shows besides the webhook: the posted fields, their errors, a preview.
#[derive(Default)]
struct FormState<'a> {
    fields: Option<&'a Fields>,
    errors: Option<Value>,
    preview: Option<Value>,
}

async fn add_page(State(st): State<AppState>, v: Viewer) -> Response {
    form_page(&st, &v, None, FormState::default())
}

async fn edit_page(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let w = st.svc.webhook(&v.actor, super::query::path_id(&id)?).await?;
    Ok(form_page(&st, &v, Some(&w), FormState::default()))
}

/// The preview of `w`'s request for the event the form names (or a sample).
async fn preview(st: &AppState, v: &Viewer, w: Webhook, saved: bool, f: &Fields) -> Result<Value, Failure> {
    let event = match f.text("event_id").trim() {
        "" => st.svc.sample_event(&w, &v.actor.user.username),
        id => {
            let id = id
                .parse()
                .map_err(|_| Error::field("event_id", "Enter the number of a recorded event."))?;
            match st.svc.recorded_event(&v.actor, id).await {
                Err(Error::NotFound) => return Ok(json!({"error": format!("There is no event {id}.")})),
                other => other?,
            }
        }
    };
    let shown = match st.svc.preview_event(&v.actor, w, saved, &event).await {
        Ok(out) => json!({
            "request": super::views::request(&out),
            "refused": st.svc.refusal(&out.url),
            "event": {"id": event.id, "kind": event.kind.as_str(), "object_type": event.object_type},
        }),
        Err(Error::Validation(e)) => json!({"error": crate::error::describe_fields(&e)}),
        Err(e) => return Err(e.into()),
    };
    Ok(shown)
}

/// Checks the form; saves it (`action=save`) or shows the preview (`action=preview`).
async fn submit(st: &AppState, p: Posted, saved: Option<Webhook>) -> Result<Response, Failure> {
    let (v, f) = (&p.viewer, &p.fields);
    let show = |errors: Value, preview: Option<Value>| {
        let shown = FormState {
            fields: Some(f),
            errors: Some(errors),
            preview,
        };
        Ok(form_page(st, v, saved.as_ref(), shown))
    };
    let body = match body_of(f, saved.is_some()) {
        Ok(b) => b,
        Err(errors) => return show(errors, None),
    };
    if f.text("action") == "preview" {
        let checked = match &saved {
            Some(w) => st.svc.check_changed_webhook(&v.actor, w.id, body).await,
            None => st.svc.check_new_webhook(body).await,
        };
        return match checked {
            Ok(w) => {
                let shown = preview(st, v, w, saved.is_some(), f).await?;
                show(json!({}), Some(shown))
            }
            Err(Error::Validation(e)) => show(e, None),
            Err(e) => Err(e.into()),
        };
    }
    let result = match &saved {
        Some(w) => st.svc.update_webhooks(&v.actor, vec![(w.id, body)], true, false).await,
        None => st.svc.create_webhooks(&v.actor, vec![body], false).await,
    };
    match result {
        Ok(mut done) => {
            let w = done.pop().ok_or(Error::NotFound)?;
            let verb = if saved.is_some() { "saved" } else { "created" };
            Ok(redirect_with(
                &format!("/extras/webhooks/{}/", w.id),
                &format!("Webhook {} {verb}.", w.name),
                v.secure,
            ))
        }
        Err(Error::Validation(e)) => show(e, None),
        Err(e) => Err(e.into()),
    }
}

async fn add(State(st): State<AppState>, p: Posted) -> Result<Response, Failure> {
    submit(&st, p, None).await
}

async fn edit(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let w = st.svc.webhook(&p.viewer.actor, super::query::path_id(&id)?).await?;
    submit(&st, p, Some(w)).await
}

async fn delete_page(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let w = st.svc.webhook(&v.actor, super::query::path_id(&id)?).await?;
    Ok(v.confirm_delete(
        &st,
        "webhooks",
        format!("Delete webhook {}?", w.name),
        "Its deliveries and their attempts go with it, and the event rules that fire it. This cannot be undone.",
        format!("/extras/webhooks/{}/", w.id),
    ))
}

async fn delete(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let id = super::query::path_id(&id)?;
    let w = st.svc.webhook(&p.viewer.actor, id).await?;
    st.svc.delete_webhooks(&p.viewer.actor, &[id]).await?;
    Ok(redirect_with(
        "/extras/webhooks/",
        &format!("Webhook {} deleted.", w.name),
        p.viewer.secure,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_api_body() {
        let f = Fields::parse(
            b"name=+hook+&content_types=dcim.site&content_types=dcim.device&type_create=on&timeout=abc\
              &retry_schedule=10,+60&conditions=&payload_url=http://x/&http_method=POST&secret=",
        );
        let body = body_of(&f, false).unwrap();
        assert_eq!(body["name"], "hook");
        assert_eq!(body["content_types"], json!(["dcim.site", "dcim.device"]));
        assert_eq!(
            (body["type_create"].clone(), body["type_update"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(body["timeout"], "abc", "left for the API's check to name");
        assert_eq!(body["retry_schedule"], json!([10, 60]));
        assert_eq!(body["conditions"], Value::Null);
        assert_eq!(body["secret"], "");
        // Editing: a blank secret keeps the saved one.
        assert!(body_of(&f, true).unwrap().get("secret").is_none());
        let bad = Fields::parse(b"conditions=%7Bnope");
        assert!(body_of(&bad, false).unwrap_err()["conditions"][0]
            .as_str()
            .unwrap()
            .starts_with("Enter valid JSON"));
    }
}
