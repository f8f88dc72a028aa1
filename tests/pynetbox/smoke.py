"""pynetbox against a running Herald: token provisioning, status, webhooks, tokens.

Usage: smoke.py BASE_URL USERNAME PASSWORD RECEIVER_URL. Prints one JSON object with what it saw;
exits non-zero on any failure.
"""
import json
import sys

import pynetbox


def main():
    base, username, password, receiver = sys.argv[1:5]
    nb = pynetbox.api(base)
    token = nb.create_token(username, password)
    seen = {"token_user": token.user.username, "token_len": len(nb.token)}
    token.user.full_details()  # follows the nested record's url
    seen["token_user_superuser"] = token.user.is_superuser
    seen["status_worker"] = nb.status()["worker-running"]

    hook = nb.extras.webhooks.create(
        name="from-pynetbox",
        content_types=["dcim.site"],
        type_create=True,
        payload_url=receiver,
        secret="pynetbox-secret",
    )
    hook.enabled = False
    hook.save()
    hook = nb.extras.webhooks.get(hook.id)
    seen["hook_enabled_after_save"] = hook.enabled
    hook.update({"enabled": True, "timeout": 5})
    fetched = nb.extras.webhooks.get(name="from-pynetbox")
    seen["hook_timeout"] = fetched.timeout
    seen["hook_enabled"] = fetched.enabled
    seen["webhooks"] = [w.name for w in nb.extras.webhooks.filter(enabled=True)]
    seen["tokens"] = len(list(nb.users.tokens.all()))
    seen["users"] = [u.username for u in nb.users.users.all()]

    # The version scripts branch on: the header pynetbox reads, and status's netbox-version.
    from packaging import version
    seen["api_version"] = nb.version
    seen["netbox_version_at_least_3_7"] = version.parse(nb.status()["netbox-version"]) >= version.parse("3.7")
    # OPTIONS on lists and on one object, as pynetbox's choices() and scripts read them.
    seen["webhook_methods"] = [c["value"] for c in nb.extras.webhooks.choices()["http_method"]]
    seen["webhook_types_include_site"] = any(
        c["value"] == "dcim.site" for c in nb.extras.webhooks.choices()["content_types"]
    )
    options = nb.http_session.options(
        f"{nb.base_url}/extras/webhooks/{hook.id}/", headers={"Authorization": f"Token {nb.token}"}
    ).json()
    seen["webhook_detail_options"] = sorted(options["actions"]["PUT"])[:3]
    user_options = nb.http_session.options(
        f"{nb.base_url}/users/users/", headers={"Authorization": f"Token {nb.token}"}
    ).json()
    seen["user_options"] = sorted(user_options["actions"]["POST"])
    site_options = nb.http_session.options(
        f"{nb.base_url}/dcim/sites/1/", headers={"Authorization": f"Token {nb.token}"}
    )
    seen["site_detail_options"] = [site_options.status_code, sorted(site_options.json()["actions"])]
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()
