"""A NetBox automation script, unchanged, against a running Herald: builds a small inventory
with pynetbox, reads it back, pages and filters, updates and deletes.

Usage: inventory.py BASE_URL TOKEN RECEIVER_URL SECRET. Prints one JSON object with what it
saw; exits non-zero on any failure.
"""
import json
import sys

import pynetbox


def main():
    base, token, receiver, secret = sys.argv[1:5]
    nb = pynetbox.api(base, token=token)
    seen = {}

    hook = nb.extras.webhooks.create(
        name="inventory",
        content_types=[
            "dcim.region", "dcim.site", "dcim.manufacturer", "dcim.devicetype", "dcim.devicerole",
            "dcim.device", "dcim.interface", "ipam.prefix", "ipam.ipaddress",
        ],
        type_create=True,
        type_update=True,
        type_delete=True,
        payload_url=receiver,
        secret=secret,
    )
    # A second webhook only for IP addresses that are reserved.
    nb.extras.webhooks.create(
        name="reserved-ips",
        content_types=["ipam.ipaddress"],
        type_create=True,
        type_update=True,
        payload_url=receiver + "?reserved",
        secret=secret,
        conditions={"attr": "status.value", "value": "reserved"},
    )
    seen["hook"] = hook.id

    region = nb.dcim.regions.create(name="Europe", slug="europe")
    site = nb.dcim.sites.create(name="AMS1", slug="ams1", region=region.id, time_zone="Europe/Amsterdam")
    mfr = nb.dcim.manufacturers.create(name="Juniper", slug="juniper")
    dtype = nb.dcim.device_types.create(manufacturer=mfr.id, model="MX204", slug="mx204")
    role = nb.dcim.device_roles.create(name="Router", slug="router", color="2196f3")
    device = nb.dcim.devices.create(
        name="edge-r1", device_type=dtype.id, role=role.id, site=site.id, serial="JN001"
    )
    seen["site_status"] = str(site.status)
    seen["device_site"] = device.site.name
    seen["device_manufacturer"] = device.device_type.manufacturer.name

    ifaces = nb.dcim.interfaces.create(
        [
            {"device": device.id, "name": "xe-0/0/0", "type": "10gbase-x-sfpp"},
            {"device": device.id, "name": "xe-0/0/1", "type": "10gbase-x-sfpp"},
        ]
    )
    mgmt = nb.dcim.interfaces.create(device=device.id, name="fxp0", type="1000base-t", mgmt_only=True)
    prefix = nb.ipam.prefixes.create(prefix="192.0.2.0/24", site=site.id, status="active")
    single_ip = nb.ipam.ip_addresses.create(address="192.0.2.1/24", dns_name="edge-r1.example.net")
    bulk_ips = nb.ipam.ip_addresses.create(
        [{"address": f"192.0.2.{i}/24", "status": "active"} for i in range(10, 14)]
    )
    seen["ids"] = {
        "region": region.id,
        "site": site.id,
        "manufacturer": mfr.id,
        "devicetype": dtype.id,
        "devicerole": role.id,
        "device": device.id,
        "interfaces": [i.id for i in ifaces] + [mgmt.id],
        "prefix": prefix.id,
        "single_ip": single_ip.id,
        "bulk_ips": [i.id for i in bulk_ips],
    }

    # Reading back: filters, pages, get.
    seen["device_interfaces"] = sorted(i.name for i in nb.dcim.interfaces.filter(device_id=device.id))
    seen["site_devices"] = [d.name for d in nb.dcim.devices.filter(site="ams1")]
    seen["paged_ips"] = len(list(nb.ipam.ip_addresses.all(limit=2)))
    seen["ip_count"] = nb.ipam.ip_addresses.count()
    seen["searched"] = [i.address for i in nb.ipam.ip_addresses.filter(q="192.0.2.1")]
    seen["prefix_family"] = prefix.family.value
    choices = nb.dcim.interfaces.choices()
    seen["interface_type_choice"] = next(c for c in choices["type"] if c["value"] == "10gbase-x-sfpp")
    seen["site_status_choices"] = [c["value"] for c in nb.dcim.sites.choices()["status"]]
    seen["mgmt_interfaces"] = [i.name for i in nb.dcim.interfaces.filter(mgmt_only=True)]
    seen["mgmt_only"] = nb.dcim.interfaces.get(mgmt.id).mgmt_only

    # What Herald does not understand is refused, naming it: never every row, never a field
    # accepted and dropped.
    refused = {}
    for name, call in [
        ("filter", lambda: list(nb.ipam.ip_addresses.filter(device_id=device.id))),
        ("custom_field", lambda: list(nb.dcim.sites.filter(cf_owner="me"))),
        ("field", lambda: nb.dcim.sites.create(name="X", slug="x", rack=1)),
        ("webhook_field", lambda: nb.extras.webhooks.create(
            name="x", content_types=["dcim.site"], type_create=True, payload_url=receiver, owner=1)),
    ]:
        try:
            call()
            refused[name] = None
        except pynetbox.RequestError as e:
            refused[name] = [e.req.status_code, sorted(e.error and json.loads(e.error).keys())]
    seen["refused"] = refused
    seen["sites_after_refusals"] = [s.slug for s in nb.dcim.sites.all()]
    got = nb.dcim.devices.get(name="edge-r1")
    seen["got_device"] = got.id
    seen["got_status"] = got.status.value

    # Updates: record.save(), record.update(), bulk update.
    got.serial = "JN002"
    got.status = "planned"
    seen["saved"] = got.save()
    seen["updated"] = single_ip.update({"dns_name": "core.example.net"})
    updated = nb.ipam.ip_addresses.update(
        [{"id": bulk_ips[0].id, "status": "reserved"}, {"id": bulk_ips[1].id, "status": "reserved"}]
    )
    seen["bulk_updated"] = [str(i.status) for i in updated]
    seen["device_serial"] = nb.dcim.devices.get(device.id).serial

    # Deletes: single and bulk.
    seen["deleted_single"] = nb.ipam.ip_addresses.get(bulk_ips[3].id).delete()
    seen["deleted_bulk"] = nb.ipam.ip_addresses.delete([bulk_ips[0], bulk_ips[1].id])
    seen["ips_left"] = sorted(i.address for i in nb.ipam.ip_addresses.all())

    # IPAM: the prefix's free addresses, and allocating from them (one, then two at once).
    prefix = nb.ipam.prefixes.get(prefix.id)
    seen["available_first"] = [a["address"] for a in prefix.available_ips.list()][:3]
    one = prefix.available_ips.create({"dns_name": "alloc.example.net"})
    two = prefix.available_ips.create([{}, {"description": "second"}])
    seen["allocated"] = [one.address] + [i.address for i in two]
    seen["allocated_ids"] = [one.id] + [i.id for i in two]
    seen["allocated_dns"] = one.dns_name
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()
