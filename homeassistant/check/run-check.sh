#!/bin/bash
# A real Home Assistant against retrotread, end to end (README.md here). Starts Mosquitto on
# 127.0.0.1:18873; the simulated treadmill (switched off) and a heart-rate strap behind the
# fake BlueZ on a private D-Bus; `retrotread run` on the real BLE path with two walkers, a
# heart-rate cap and a cue command, so it reaches the broker before the treadmill; a fresh
# Home Assistant in the chroot; then check.py. Afterwards HA's config check with the
# blueprint automation, an HA restart while the daemon is idle, and SIGTERM to the daemon.
# Stops everything it started, by PID.
# Usage: homeassistant/check/run-check.sh [RETROTREAD_BIN]   (from the project root;
#        default .venv/bin/retrotread). Output: /tmp/ha-real/run/ (check.txt, HA's log...).
set -u
H=$(cd "$(dirname "$0")" && pwd)
R=${TRIXIE:-/opt/trixie}
RT=${1:-$PWD/.venv/bin/retrotread}
PY=$(dirname "$RT")/python
REPO=$PWD
PORT=${MQTT_PORT:-18873}
BP_PORT=${BP_PORT:-18880}
W=/tmp/ha-real/run
POWER=$R/root/rt-power-on
rm -rf "$W"; mkdir -p "$W/sessions" "$W/cues"; rm -f "$POWER"
PIDS=()
cleanup() {
  if [ -f /tmp/ha-real/hass.pid ] && kill -0 "$(cat /tmp/ha-real/hass.pid)" 2>/dev/null; then
    HP=$(cat /tmp/ha-real/hass.pid); kill -TERM "$HP"
    for _ in $(seq 1 60); do kill -0 "$HP" 2>/dev/null || break; sleep 0.5; done
  fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done; done
  cp "$R/root/ha-config/home-assistant.log" "$R/root/ha-config/home-assistant.log.1" "$R/root/ha-config/check-result.json" "$R/root/ha-config/spoken.jsonl" "$R/root/ha-config/automations.yaml" "$W/" 2>/dev/null
  echo "outputs in $W"
}
trap cleanup EXIT
cat > "$W/mosquitto.conf" <<EOC
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
EOC
/usr/sbin/mosquitto -c "$W/mosquitto.conf" > "$W/mosquitto.log" 2>&1 & PIDS+=($!)
# The treadmill, off: the fake BlueZ serves it, but it does not advertise until $POWER exists.
POWER_ON_FILE=$POWER PYTHONPATH=$H "$PY" -m retrotread.sim.bluez_server harness_treadmill:make \
  > "$W/bluez.out" 2> "$W/bluez.err" & PIDS+=($!)
for _ in $(seq 1 50); do grep -q '^PATH_PREFIX=' "$W/bluez.out" 2>/dev/null && break; sleep 0.1; done
BUS=$(sed -n 's/^DBUS_SYSTEM_BUS_ADDRESS=//p' "$W/bluez.out")
PREFIX=$(sed -n 's/^PATH_PREFIX=//p' "$W/bluez.out")
[ -n "$BUS" ] || { echo "bluez_server did not start"; cat "$W/bluez.err"; exit 1; }
cat > "$W/retrotread.toml" <<EOC
[treadmill]
address = "C0:FF:EE:00:00:01"
reconnect_max_backoff_s = 2
scan_timeout_s = 3

[mqtt]
host = "127.0.0.1"
port = $PORT

[safety]
max_heart_rate_bpm = 150

[heart_rate]
address = "C0:FF:EE:00:00:02"

[sessions]
dir = "$W/sessions"

[[walker]]
name = "anna"
plan = "retro-start"
age = 64

[[walker]]
name = "ben"
plan = "knee-6-weeks"

[cues]
command = "espeak-ng -w $W/cues/{type}.wav {text}"
EOC
"$RT" check-config -c "$W/retrotread.toml" > /dev/null || exit 1
DBUS_SYSTEM_BUS_ADDRESS=$BUS PATH=${PREFIX:+$PREFIX:}$PATH \
  "$RT" --log-level INFO run -c "$W/retrotread.toml" > "$W/retrotread.log" 2>&1 & RTPID=$!; PIDS+=($RTPID)
# The blueprint, served over HTTP the way HA's "Import blueprint" fetches a URL.
python3 -m http.server "$BP_PORT" --bind 127.0.0.1 --directory "$REPO/homeassistant/blueprints" \
  > "$W/http.log" 2>&1 & PIDS+=($!)
cp "$H"/*.py "$R/root/"
"$H/start-ha.sh" --fresh || exit 1
sleep 5
"$H/in-chroot.sh" python /root/check.py --mqtt-port "$PORT" --power-on /root/rt-power-on \
  --placeholder "C0:FF:EE:00:00:01" \
  --blueprint-url "http://127.0.0.1:$BP_PORT/automation/retrotread/spoken_cues.yaml" 2>&1 | tee "$W/check.txt"
echo; echo "== the README's import URL, as HA's blueprint importer reads it:" | tee -a "$W/check.txt"
"$H/in-chroot.sh" python -c "from homeassistant.components.blueprint.importer import _get_github_import_url as f; print(f('https://github.com/OWNER/retrotread/blob/main/homeassistant/blueprints/automation/retrotread/spoken_cues.yaml'))" 2>&1 | tee -a "$W/check.txt"
echo; echo "== HA config check (hass --script check_config), with the blueprint automation:" | tee -a "$W/check.txt"
"$H/in-chroot.sh" hass --script check_config -c /root/ha-config --fail-on-warnings -i automation > "$W/config-check.txt" 2>&1
echo "check_config exit status: $?" | tee -a "$W/check.txt"
sed 's/\x1b\[[0-9;]*m//g' "$W/config-check.txt" | tee -a "$W/check.txt"
echo; echo "== daemon-side cues ([cues] command = espeak-ng -w ...):" | tee -a "$W/check.txt"
ls -l "$W/cues" | tee -a "$W/check.txt"
grep -i "cue" "$W/retrotread.log" | tail -5 | tee -a "$W/check.txt"
echo; echo "== Home Assistant restarted while the daemon is idle (telemetry quiet): states" | tee -a "$W/check.txt"
SPOKEN_BEFORE=$(wc -l < "$R/root/ha-config/spoken.jsonl")
HP=$(cat /tmp/ha-real/hass.pid); kill -TERM "$HP"
for _ in $(seq 1 60); do kill -0 "$HP" 2>/dev/null || break; sleep 0.5; done
"$H/start-ha.sh" | tee -a "$W/check.txt"
for t in 3 10; do
  sleep "$t"; echo "-- ${t} s later:" | tee -a "$W/check.txt"
  "$H/in-chroot.sh" python /root/ha.py states 2>&1 | tee -a "$W/check.txt"
done
echo "fake speaker lines before the restart: $SPOKEN_BEFORE, after: $(wc -l < "$R/root/ha-config/spoken.jsonl") (a restored event is not spoken again)" | tee -a "$W/check.txt"
echo; echo "== SIGTERM retrotread ($RTPID); HA states afterwards:" | tee -a "$W/check.txt"
kill -TERM "$RTPID"; sleep 5
"$H/in-chroot.sh" python /root/ha.py states 2>&1 | tee -a "$W/check.txt"
"$H/in-chroot.sh" python /root/issues.py 2>&1 | tee -a "$W/check.txt"
echo "== HA log lines at WARNING or above:" | tee -a "$W/check.txt"
# Both runs of HA: the first (log.1, rotated by the restart) and the restarted one.
grep -h -E " (WARNING|ERROR|CRITICAL) " "$R/root/ha-config/home-assistant.log.1" \
  "$R/root/ha-config/home-assistant.log" | cut -c1-300 | tee -a "$W/check.txt"
