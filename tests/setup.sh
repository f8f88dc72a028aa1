#!/usr/bin/env bash
# What the tests need besides Rust: Debian's chromium and chromedriver (the admin pages'
# end-to-end test drives them) and the Python packages of tests/requirements.txt (Jinja2 and
# pynetbox). Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q chromium chromium-driver >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null; }
fi
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
