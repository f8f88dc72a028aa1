"""A NetBox 4 script: a webhook without triggers of its own, event rules pointing at it,
changes that fire them (and changes that do not), the rule filters, and a refused job rule.
Prints what it saw as JSON."""
import json
import sys

import pynetbox

url, token, receiver = sys.argv[1:4]
nb = pynetbox.api(url, token=token)
out = {}

hook = nb.extras.webhooks.create(
    name="netbox4",
    payload_url=receiver + "/netbox4",
    http_method="POST",
    http_content_type="application/json",
    secret="s4",
    description="NetBox 4 style",
)
out["hook"] = {"content_types": hook.content_types, "type_create": hook.type_create,
               "description": hook.description}

active = nb.extras.event_rules.create(
    name="active sites",
    object_types=["dcim.site"],
    event_types=["object_created", "object_updated"],
    action_type="webhook",
    action_object_type="extras.webhook",
    action_object_id=hook.id,
    conditions={"attr": "status.value", "value": "active"},
    description="created or changed while active",
)
deletes = nb.extras.event_rules.create(
    name="site deletes",
    object_types=["dcim.site"],
    event_types=["object_deleted"],
    action_type="webhook",
    action_object_type="extras.webhook",
    action_object_id=hook.id,
)
shown = dict(nb.extras.event_rules.get(active.id))
out["rule"] = {
    "event_types": shown["event_types"],
    "action_type": shown["action_type"]["value"],
    "action_object_type": shown["action_object_type"],
    "action_object": shown["action_object"]["name"],
    "enabled": shown["enabled"],
}

ams = nb.dcim.sites.create(name="Ams", slug="ams", status="active")  # fires "active sites"
rtm = nb.dcim.sites.create(name="Rtm", slug="rtm", status="planned")  # its condition fails
ams.description = "first"
ams.save()  # fires "active sites"
rtm.delete()  # fires "site deletes"
active.enabled = False
active.save()
nb.dcim.sites.create(name="Ber", slug="ber", status="active")  # the rule is off

out["by_webhook"] = sorted(r.name for r in nb.extras.event_rules.filter(action_object_id=hook.id))
out["by_event"] = [r.name for r in nb.extras.event_rules.filter(event_type="object_deleted")]
out["enabled"] = [r.name for r in nb.extras.event_rules.filter(enabled=True)]
out["by_name"] = [r.name for r in nb.extras.event_rules.filter(name__ic="ACTIVE")]
out["ids"] = {"hook": hook.id, "active": active.id, "deletes": deletes.id}

try:
    nb.extras.event_rules.create(
        name="jobs", object_types=["dcim.site"], event_types=["job_started"],
        action_type="webhook", action_object_type="extras.webhook", action_object_id=hook.id,
    )
    out["job_rule"] = "accepted"
except pynetbox.RequestError as e:
    out["job_rule"] = [e.req.status_code, sorted(e.error if isinstance(e.error, dict) else json.loads(e.error))]
try:
    list(nb.extras.event_rules.filter(action_object_name="netbox4"))
    out["unknown_filter"] = "accepted"
except pynetbox.RequestError as e:
    out["unknown_filter"] = e.req.status_code

print(json.dumps(out))
