#!/bin/bash
# Build a Debian trixie chroot with Python 3.13 and Home Assistant core in a venv.
# Usage: setup-chroot.sh [HA_VERSION]   (default 2026.2.3, the newest that runs on 3.13)
# Idempotent: skips the debootstrap when /opt/trixie exists. Needs root; ~1.5 GB disk; ~3 min.
set -eu
H=$(cd "$(dirname "$0")" && pwd)
R=${TRIXIE:-/opt/trixie}
HA_VERSION=${1:-2026.2.3}
MIRROR=${MIRROR:-$(sed -n "s/^URIs: *//p" /etc/apt/sources.list.d/debian.sources | head -1)}   # the machine's own Debian mirror
command -v mmdebstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq mmdebstrap; }
if [ ! -x "$R/usr/bin/python3" ]; then
  mmdebstrap --variant=apt \
    --include=python3,python3-venv,python3-dev,build-essential,ca-certificates,curl,libffi-dev,libssl-dev,zlib1g-dev,libjpeg62-turbo-dev,git,procps \
    trixie "$R" "$MIRROR"
fi
# Pip inside the chroot trusts what the host trusts (a TLS-intercepting proxy, if any).
cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/host-ca.crt"
"$H/mounts.sh" up
cp "$H"/*.py "$R/root/"
[ -x "$R/opt/ha-venv/bin/python" ] || "$H/in-chroot.sh" python3 -m venv /opt/ha-venv
"$H/in-chroot.sh" pip install -q -U pip wheel
"$H/in-chroot.sh" pip install -q "homeassistant==$HA_VERSION"
# HA pip-installs integration requirements at startup only when it can reach PyPI (and we
# start it with --skip-pip): pre-install those of every integration this config loads.
"$H/in-chroot.sh" python /root/integration_reqs.py homeassistant persistent_notification isal \
  logger network system_log labs frontend analytics application_credentials backup hardware \
  system_health automation person scene script tag zone counter input_boolean input_button \
  input_datetime input_number input_select input_text schedule timer mqtt onboarding api \
  websocket_api config auth http recorder logbook tts media_player media_source \
  > "$R/root/ha-reqs.txt"
"$H/in-chroot.sh" pip install -q -r /root/ha-reqs.txt \
  -c /opt/ha-venv/lib/python3.13/site-packages/homeassistant/package_constraints.txt
"$H/in-chroot.sh" python -c "import homeassistant.const as c; print('homeassistant', c.__version__)"
