#!/usr/bin/env bash
# What the tests need besides Rust: Debian's chromium and chromedriver (the admin pages'
# end-to-end test drives them) and the Python packages of tests/requirements.txt (Jinja2 and
# pynetbox), and Debian's promtool (prometheus) and systemd-analyze (systemd). Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    $sudo apt-get install -y -q "$@" >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then apt_install chromium chromium-driver; fi
# promtool checks every /metrics scrape the tests take; systemd-analyze checks the units.
if ! [ -x /usr/bin/promtool ]; then apt_install --no-install-recommends prometheus; fi
if ! [ -x /usr/bin/systemd-analyze ]; then apt_install --no-install-recommends systemd; fi
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
