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
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main()
