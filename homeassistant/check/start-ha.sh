#!/bin/bash
# Start Home Assistant inside the trixie chroot with a fresh (or existing) config dir.
# Usage: start-ha.sh [--fresh]    PID in /tmp/ha-real/hass.pid, log in $CFG/home-assistant.log
set -eu
H=$(cd "$(dirname "$0")" && pwd)
R=${TRIXIE:-/opt/trixie}
CFG=$R/root/ha-config
mkdir -p /tmp/ha-real
"$H/mounts.sh" up
if [ "${1:-}" = "--fresh" ]; then rm -rf "$CFG"; fi
mkdir -p "$CFG"
cp "$H/configuration.yaml" "$CFG/configuration.yaml"
mkdir -p "$CFG/custom_components"
rm -rf "$CFG/custom_components/fake_speaker"
cp -r "$H/fake_speaker" "$CFG/custom_components/fake_speaker"
[ -f "$CFG/automations.yaml" ] || echo "[]" > "$CFG/automations.yaml"
nohup "$H/in-chroot.sh" hass -c /root/ha-config --skip-pip > /tmp/ha-real/hass.out 2>&1 &
echo $! > /tmp/ha-real/hass.pid
echo "hass pid $(cat /tmp/ha-real/hass.pid); waiting for http://127.0.0.1:18123 ..."
for i in $(seq 1 180); do
  if curl -s -o /dev/null http://127.0.0.1:18123/api/onboarding 2>/dev/null; then echo "HA up after ${i}s"; exit 0; fi
  kill -0 "$(cat /tmp/ha-real/hass.pid)" 2>/dev/null || { echo "hass died"; tail -30 /tmp/ha-real/hass.out; exit 1; }
  sleep 1
done
echo "HA did not come up in 180 s"; exit 1
