"""NetBox filters the way scripts use them, through pynetbox, on data whose answers are known;
and the filters and fields Herald does not implement, each of which must be refused.

Usage: filters.py BASE_URL TOKEN. Prints one JSON object with what it saw.
"""
import json
import sys

import pynetbox


def names(records, attr="name"):
    return sorted(str(getattr(r, attr)) for r in records)


def refused(call):
    """The status and the names in the error body, or None when the call went through."""
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, (str, dict)):
            list(result)
        return None
    except pynetbox.RequestError as e:
        return [e.req.status_code, sorted(json.loads(e.error).keys())]


def main():
    base, token = sys.argv[1:3]
    nb = pynetbox.api(base, token=token)
    seen = {}

    site = nb.dcim.sites.create(name="AMS1", slug="ams1")
    core = nb.extras.tags.create(name="core", slug="core")
    edge = nb.extras.tags.create(name="edge", slug="edge")
    mfr = nb.dcim.manufacturers.create(name="Juniper", slug="juniper")
    dtype = nb.dcim.device_types.create(manufacturer=mfr.id, model="MX204", slug="mx204")
    role = nb.dcim.device_roles.create(name="Router", slug="router")
    dev = nb.dcim.devices.create(name="edge-r1", device_type=dtype.id, role=role.id, site=site.id,
                                 tags=[{"slug": "core"}])
    nb.dcim.devices.create(name="Edge-R2", device_type=dtype.id, role=role.id, site=site.id,
                           tags=[{"slug": "edge"}])
    nb.dcim.devices.create(name="core-sw1", device_type=dtype.id, role=role.id, site=site.id)
    nb.dcim.interfaces.create([
        {"device": dev.id, "name": "xe-0/0/0", "type": "10gbase-x-sfpp"},
        {"device": dev.id, "name": "ae0", "type": "lag"},
        {"device": dev.id, "name": "wlan0", "type": "ieee802.11ax"},
        {"device": dev.id, "name": "fxp0", "type": "1000base-t", "mgmt_only": True},
    ])
    nb.ipam.prefixes.create([
        {"prefix": "10.0.0.0/8"},
        {"prefix": "10.1.0.0/16"},
        {"prefix": "10.1.2.0/24"},
        {"prefix": "192.0.2.0/24"},
    ])
    nb.ipam.ip_addresses.create([
        {"address": "10.1.2.1/24"},
        {"address": "10.1.2.2/32"},
        {"address": "10.9.0.1/16"},
        {"address": "192.0.2.5/24"},
    ])

    ips, prefixes, ifaces, devices = nb.ipam.ip_addresses, nb.ipam.prefixes, nb.dcim.interfaces, nb.dcim.devices
    seen["ip_parent"] = names(ips.filter(parent="10.1.0.0/16"), "address")
    seen["ip_parent_two"] = names(ips.filter(parent=["10.1.2.0/24", "192.0.2.0/24"]), "address")
    seen["ip_mask_length"] = names(ips.filter(mask_length=24), "address")
    seen["ip_mask_length_gte"] = names(ips.filter(mask_length__gte=24), "address")
    seen["prefix_within"] = names(prefixes.filter(within="10.0.0.0/8"), "prefix")
    seen["prefix_within_include"] = names(prefixes.filter(within_include="10.1.0.0/16"), "prefix")
    seen["prefix_contains"] = names(prefixes.filter(contains="10.1.2.7"), "prefix")
    seen["prefix_contains_net"] = names(prefixes.filter(contains="10.1.0.0/16"), "prefix")
    seen["prefix_mask_length"] = names(prefixes.filter(mask_length=[16, 24]), "prefix")
    seen["prefix_children"] = names(prefixes.filter(children=2), "prefix")
    seen["prefix_depth"] = names(prefixes.filter(depth=2), "prefix")
    seen["iface_mgmt_only"] = names(ifaces.filter(mgmt_only=True))
    seen["iface_not_mgmt"] = names(ifaces.filter(mgmt_only=False))
    seen["iface_virtual"] = names(ifaces.filter(kind="virtual"))
    seen["iface_wireless"] = names(ifaces.filter(kind="wireless"))
    seen["iface_physical"] = names(ifaces.filter(kind="physical"))
    seen["dev_tag_id"] = names(devices.filter(tag_id=core.id))
    seen["dev_tag_n"] = names(devices.filter(tag__n="core"))
    seen["dev_tag_id_n"] = names(devices.filter(tag_id__n=[core.id, edge.id]))
    seen["dev_regex"] = names(devices.filter(name__regex="^edge-"))
    seen["dev_iregex"] = names(devices.filter(name__iregex="^edge-"))

    hooks = nb.extras.webhooks
    hooks.create(name="a", content_types=["dcim.site"], type_create=True,
                 payload_url="https://hooks.example.com/a", ssl_verification=False)
    hooks.create(name="b", content_types=["dcim.site"], type_update=True,
                 payload_url="http://receiver.internal/b", http_content_type="application/x-www-form-urlencoded")
    seen["hook_payload_url"] = names(hooks.filter(payload_url="http://receiver.internal/b"))
    seen["hook_payload_url_ic"] = names(hooks.filter(payload_url__ic="EXAMPLE"))
    seen["hook_payload_url_nisw"] = names(hooks.filter(payload_url__nisw="https://"))
    seen["hook_type_create"] = names(hooks.filter(type_create=True))
    seen["hook_type_update"] = names(hooks.filter(type_update=True))
    seen["hook_ssl_verification"] = names(hooks.filter(ssl_verification=False))
    seen["hook_http_content_type"] = names(hooks.filter(http_content_type="application/x-www-form-urlencoded"))

    seen["refused"] = {
        "present_in_vrf_id": refused(lambda: ips.filter(present_in_vrf_id=1)),
        "device_id": refused(lambda: ips.filter(device_id=dev.id)),
        "cf_owner": refused(lambda: devices.filter(cf_owner="me")),
        "bad_regex": refused(lambda: devices.filter(name__regex="(")),
        "hook_tags": refused(lambda: hooks.filter(tag="core")),
        "latitude_on_device": refused(lambda: devices.create(name="x", device_type=dtype.id, role=role.id,
                                                             site=site.id, latitude=1)),
        "rack": refused(lambda: devices.create(name="x", device_type=dtype.id, role=role.id, site=site.id, rack=1)),
        "scope_id": refused(lambda: prefixes.create(prefix="172.16.0.0/12", scope_type="dcim.site", scope_id=1)),
    }
    seen["devices_after"] = names(devices.all())

    # pynetbox's strict_filters checks filter names against /api/schema/ before asking.
    strict = pynetbox.api(base, token=token, strict_filters=True)
    seen["strict"] = {
        "ip_parent": names(strict.ipam.ip_addresses.filter(parent="10.1.0.0/16"), "address"),
        "prefix_within": names(strict.ipam.prefixes.filter(within="10.0.0.0/8", mask_length__gte=24), "prefix"),
        "dev_regex": names(strict.dcim.devices.filter(name__regex="^edge-", tag_id__n=edge.id)),
        "hook_payload_url_ic": names(strict.extras.webhooks.filter(payload_url__ic="EXAMPLE")),
        "rules_enabled": names(strict.extras.event_rules.filter(enabled=True, name__ic="x")),
        "deliveries_failed": len(list(strict.extras.deliveries.filter(status="failed"))),
    }
    try:
        list(strict.dcim.devices.filter(device_id=1))
        seen["strict_refused"] = None
    except pynetbox.core.query.ParameterValidationError as e:
        seen["strict_refused"] = "device_id" in str(e)
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()
