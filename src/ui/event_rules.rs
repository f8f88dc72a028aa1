//! Operations › Event rules (NetBox 3.7 and later): which object types and events fire which
//! webhook. The list, the detail with the deliveries each rule queued, the add/edit form and
//! delete. The form's fields become the REST API's JSON body and go through the same service
//! calls, so its errors are the API's.

use super::query::path_id;
use super::query::Query;
use super::render::Failure;
use super::session::{redirect_with, Fields};
use super::viewer::{Posted, Viewer};
use crate::api::AppState;
use crate::error::Error;
use crate::events::EventKind;
use crate::queue::DeliveryFilter;
use crate::service::{EventRuleFilter, WebhookFilter};
use crate::webhooks::event_rule::{event_type_name, ACTION_OBJECT_TYPE, ACTION_TYPE};
use crate::webhooks::EventRule;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/extras/event-rules/", get(list))
        .route("/extras/event-rules/add/", get(add_page).post(add))
        .route("/extras/event-rules/{id}/", get(detail))
        .route("/extras/event-rules/{id}/edit/", get(edit_page).post(edit))
        .route("/extras/event-rules/{id}/delete/", get(delete_page).post(delete))
}

const KINDS: [EventKind; 3] = [EventKind::Created, EventKind::Updated, EventKind::Deleted];

/// Every webhook's id and name, for the form's picker.
async fn webhook_names(st: &AppState, v: &Viewer) -> Result<Vec<(i64, String)>, Failure> {
    if !v
        .actor
        .can(crate::auth::permissions::types::WEBHOOK, crate::auth::Action::View)
    {
        return Ok(Vec::new());
    }
    let all = st
        .svc
        .webhooks(&v.actor, &WebhookFilter::default(), i64::MAX, 0)
        .await?;
    Ok(all.items.into_iter().map(|w| (w.id, w.name)).collect())
}

/// Each rule's summary with its webhook's name (null for those who may not see webhooks):
/// only the rules' own webhooks are read.
async fn with_webhooks(st: &AppState, v: &Viewer, rules: &[EventRule]) -> Result<Vec<Value>, Failure> {
    let webhooks = st.svc.rule_webhooks(&v.actor, rules, "").await?;
    Ok(rules
        .iter()
        .map(|r| {
            let mut row = super::views::rule_summary(r);
            row["webhook"] = webhooks
                .iter()
                .find(|(id, _)| *id == r.webhook_id)
                .map_or(Value::Null, |(_, w)| w["name"].clone());
            row
        })
        .collect())
}

async fn list(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    let (limit, offset) = q.page()?;
    let filter = EventRuleFilter::read(&q.given(), &[])?;
    let page = st.svc.event_rules(&v.actor, &filter, limit, offset).await?;
    let rows = with_webhooks(&st, &v, &page.items).await?;
    let ctx = json!({
        "section": "event_rules",
        "rules": rows,
        "pages": q.paginator(page.count, limit, offset, None),
        "filters": q.filter_values(),
        "filtered": !q.filters().is_empty(),
        "types": super::views::type_options(&st, &q.all("object_type")),
        "kinds": KINDS.iter().map(|k| json!({"value": event_type_name(*k), "label": k.as_str()})).collect::<Vec<_>>(),
    });
    Ok(v.page(&st, "event_rules.html", "Event rules", ctx))
}

async fn detail(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let id = path_id(&id)?;
    let r = st.svc.event_rule(&v.actor, id).await?;
    let filter = DeliveryFilter {
        event_rule_id: vec![id],
        ..DeliveryFilter::default()
    };
    let recent = st
        .svc
        .deliveries(&v.actor, &filter, 10, 0, Some(super::COUNT_AT_MOST))
        .await?;
    let mut rule = with_webhooks(&st, &v, std::slice::from_ref(&r)).await?.remove(0);
    rule["kinds"] = KINDS
        .iter()
        .map(|k| json!({"label": k.as_str(), "on": r.event_types.contains(k)}))
        .collect();
    let ctx = json!({
        "section": "event_rules",
        "rule": rule,
        "deliveries": recent.items.iter().map(|d| super::views::delivery_row(&st.svc.catalog, d)).collect::<Vec<_>>(),
        "delivery_count": super::render::count_text(recent.count, super::COUNT_AT_MOST),
    });
    Ok(v.page(&st, "event_rule.html", &r.name, ctx))
}

/// The form's values as the API's JSON body. Text that cannot be read as the type the API
/// wants is passed on as it is, so the API's own check names the field.
fn body_of(f: &Fields) -> Result<Value, Value> {
    let webhook = f.text("action_object_id").trim();
    let conditions = f.text("conditions").trim();
    Ok(json!({
        "name": f.text("name").trim(),
        "description": f.text("description").trim(),
        "object_types": f.all("object_types"),
        "event_types": f.all("event_types"),
        "enabled": f.checked("enabled"),
        "conditions": if conditions.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(conditions).map_err(|e| json!({"conditions": [format!("Enter valid JSON: {e}.")]}))?
        },
        "action_type": ACTION_TYPE,
        "action_object_type": ACTION_OBJECT_TYPE,
        "action_object_id": webhook.parse::<i64>().map_or_else(|_| Value::from(webhook), Value::from),
    }))
}

/// The add or edit form: the posted values (with their errors) or the rule's.
async fn form_page(
    st: &AppState,
    v: &Viewer,
    saved: Option<&EventRule>,
    start: EventRule,
    posted: Option<(&Fields, Value)>,
) -> Result<Response, Failure> {
    let (values, errors) = match posted {
        Some((f, errors)) => (
            json!({
                "name": f.text("name"), "description": f.text("description"), "enabled": f.checked("enabled"),
                "conditions": f.text("conditions"), "webhook_id": f.text("action_object_id").parse::<i64>().ok(),
                "object_types": f.all("object_types"), "event_types": f.all("event_types"),
            }),
            errors,
        ),
        None => {
            let mut v = super::views::rule_summary(&start);
            v["event_types"] = json!(start
                .event_types
                .iter()
                .map(|k| event_type_name(*k))
                .collect::<Vec<_>>());
            (v, json!({}))
        }
    };
    let chosen: Vec<String> = values["object_types"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let kinds: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            let name = event_type_name(*k);
            let on = values["event_types"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(name)));
            json!({"value": name, "label": k.as_str(), "on": on})
        })
        .collect();
    let webhooks: Vec<Value> = webhook_names(st, v)
        .await?
        .into_iter()
        .map(|(id, name)| json!({"id": id, "name": name, "selected": values["webhook_id"] == json!(id)}))
        .collect();
    let title = match saved {
        Some(r) => format!("Editing event rule {}", r.name),
        None => "Add a new event rule".to_string(),
    };
    let status = if errors.as_object().is_some_and(|e| !e.is_empty()) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let ctx = json!({
        "section": "event_rules",
        "editing": saved.map(|r| json!({"id": r.id, "name": r.name})),
        "values": values,
        "errors": errors,
        "types": super::views::type_options(st, &chosen),
        "kinds": kinds,
        "webhooks": webhooks,
    });
    Ok(v.page_with(st, status, "event_rule_form.html", &title, ctx))
}

/// A new rule, its webhook chosen when the page was opened from one.
async fn add_page(State(st): State<AppState>, v: Viewer, q: Query) -> Result<Response, Failure> {
    let mut start = EventRule::blank();
    start.webhook_id = q.ints("action_object_id")?.first().copied().unwrap_or(0);
    form_page(&st, &v, None, start, None).await
}

async fn edit_page(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let r = st.svc.event_rule(&v.actor, path_id(&id)?).await?;
    form_page(&st, &v, Some(&r), r.clone(), None).await
}

async fn submit(st: &AppState, p: Posted, saved: Option<EventRule>) -> Result<Response, Failure> {
    let (v, f) = (&p.viewer, &p.fields);
    let start = saved.clone().unwrap_or_else(EventRule::blank);
    let body = match body_of(f) {
        Ok(b) => b,
        Err(errors) => return form_page(st, v, saved.as_ref(), start, Some((f, errors))).await,
    };
    let result = match &saved {
        Some(r) => {
            st.svc
                .update_event_rules(&v.actor, vec![(r.id, body)], false, false)
                .await
        }
        None => st.svc.create_event_rules(&v.actor, vec![body], false).await,
    };
    match result {
        Ok(mut done) => {
            let r = done.pop().ok_or(Error::NotFound)?;
            let verb = if saved.is_some() { "saved" } else { "created" };
            Ok(redirect_with(
                &format!("/extras/event-rules/{}/", r.id),
                &format!("Event rule {} {verb}.", r.name),
                v.secure,
            ))
        }
        Err(Error::Validation(e)) => form_page(st, v, saved.as_ref(), start, Some((f, e))).await,
        Err(e) => Err(e.into()),
    }
}

async fn add(State(st): State<AppState>, p: Posted) -> Result<Response, Failure> {
    submit(&st, p, None).await
}

async fn edit(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let r = st.svc.event_rule(&p.viewer.actor, path_id(&id)?).await?;
    submit(&st, p, Some(r)).await
}

async fn delete_page(State(st): State<AppState>, v: Viewer, Path(id): Path<String>) -> Result<Response, Failure> {
    let r = st.svc.event_rule(&v.actor, path_id(&id)?).await?;
    Ok(v.confirm_delete(
        &st,
        "event_rules",
        format!("Delete event rule {}?", r.name),
        "Its webhook stays, and so do the deliveries the rule queued. This cannot be undone.",
        format!("/extras/event-rules/{}/", r.id),
    ))
}

async fn delete(State(st): State<AppState>, Path(id): Path<String>, p: Posted) -> Result<Response, Failure> {
    let id = path_id(&id)?;
    let r = st.svc.event_rule(&p.viewer.actor, id).await?;
    st.svc.delete_event_rules(&p.viewer.actor, &[id]).await?;
    Ok(redirect_with(
        "/extras/event-rules/",
        &format!("Event rule {} deleted.", r.name),
        p.viewer.secure,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_api_body() {
        let f = Fields::parse(
            b"name=+r+&object_types=dcim.site&object_types=dcim.rack&event_types=object_created&enabled=on\
              &conditions=&action_object_id=7",
        );
        let body = body_of(&f).unwrap();
        assert_eq!(body["name"], "r");
        assert_eq!(body["object_types"], json!(["dcim.site", "dcim.rack"]));
        assert_eq!(body["event_types"], json!(["object_created"]));
        assert_eq!(body["action_object_id"], 7);
        assert_eq!(body["conditions"], Value::Null);
        let odd = Fields::parse(b"action_object_id=seven&conditions=%7Bnope");
        assert!(body_of(&odd).unwrap_err()["conditions"][0]
            .as_str()
            .unwrap()
            .starts_with("Enter valid JSON"));
        let odd = Fields::parse(b"action_object_id=seven");
        assert_eq!(
            body_of(&odd).unwrap()["action_object_id"],
            "seven",
            "left for the API to name"
        );
    }
}
