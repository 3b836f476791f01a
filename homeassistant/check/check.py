"""End to end: retrotread's MQTT discovery, commands and events in a real Home Assistant.

Runs inside the trixie chroot with the HA venv's python (aiohttp and paho-mqtt are there),
started by run-check.sh. Onboards HA (first run), adds the MQTT config entry through the
config-flow REST API; with --power-on, shows the device under its placeholder name, switches
the simulated treadmill on and waits for the rename; lists the entities and their idle
values (the coach's and the heart rate's too) and drives the walker select, a rating button
and the pain slider; imports the spoken-cues blueprint from --blueprint-url and makes an
automation from it; picks a profile, asks for another one while it runs (refused: the
Events entity shows it), presses the buttons, then skips to a backward phase so that the
automation speaks the turn_required cue through the harness's fake tts and speaker; prints
the automation's traces, the logbook and HA's system log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import time

import aiohttp
import paho.mqtt.client as mqtt

TOKEN_FILE = pathlib.Path("/root/ha-config/.check-token")
CLIENT_ID = "http://127.0.0.1:18123/"


def say(*a):
    print(*a, flush=True)


class Watch:
    """Record retrotread/<id>/state, cmd and cmd/result as seen on the broker."""

    def __init__(self, port: int, base: str):
        self.msgs: list[tuple[float, str, str]] = []
        self.base = base
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *_: [
            cl.subscribe(t, 1)
            for t in (
                f"{base}/state",
                f"{base}/cmd",
                f"{base}/cmd/result",
                f"{base}/event",
                f"{base}/availability",
                "homeassistant/status",
            )
        ]
        c.on_message = lambda cl, u, m: self.msgs.append(
            (time.time(), m.topic, m.payload.decode(errors="replace"))
        )
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c

    def last_state(self) -> dict | None:
        for _, t, p in reversed(self.msgs):
            if t == f"{self.base}/state":
                return json.loads(p)
        return None

    def since(self, t0: float, topic_suffix: str):
        return [
            (t, p) for t, top, p in self.msgs if t >= t0 and top == f"{self.base}/{topic_suffix}"
        ]


async def onboard(s: aiohttp.ClientSession, ha: str) -> str:
    if TOKEN_FILE.exists():
        return TOKEN_FILE.read_text().strip()
    r = await s.post(
        f"{ha}/api/onboarding/users",
        json={
            "client_id": CLIENT_ID,
            "name": "Owner",
            "username": "owner",
            "password": "retrotread-check-pw",
            "language": "en",
        },
    )
    body = await r.json()
    say("onboarding/users:", r.status, list(body))
    r = await s.post(
        f"{ha}/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": body["auth_code"],
            "client_id": CLIENT_ID,
        },
    )
    tok = (await r.json())["access_token"]
    h = {"Authorization": f"Bearer {tok}"}
    for step, payload in (
        ("core_config", {}),
        ("analytics", {}),
        ("integration", {"client_id": CLIENT_ID, "redirect_uri": CLIENT_ID}),
    ):
        r = await s.post(f"{ha}/api/onboarding/{step}", json=payload, headers=h)
        say(f"onboarding/{step}:", r.status)
    # a long-lived token so that re-runs work after the 30-minute access token expires
    async with s.ws_connect(f"{ha}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": tok})
        await ws.receive_json()
        await ws.send_json(
            {
                "id": 1,
                "type": "auth/long_lived_access_token",
                "client_name": "retrotread-check",
                "lifespan": 365,
            }
        )
        llat = (await ws.receive_json())["result"]
    TOKEN_FILE.write_text(llat)
    return llat


class WS:
    def __init__(self, ws):
        self.ws, self.n = ws, 0

    async def call(self, **msg):
        self.n += 1
        msg["id"] = self.n
        await self.ws.send_json(msg)
        while True:
            m = await self.ws.receive_json()
            if m.get("id") == self.n and m.get("type") == "result":
                if not m["success"]:
                    raise RuntimeError(f"{msg['type']}: {m['error']}")
                return m["result"]


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ha", default="http://127.0.0.1:18123")
    ap.add_argument("--mqtt-port", type=int, default=18873)
    ap.add_argument("--base", default="retrotread/treadmill")
    ap.add_argument("--profile", default="first-steps")
    ap.add_argument("--run-s", type=float, default=25, help="how long to let the profile run")
    ap.add_argument("--json-out", default="/root/ha-config/check-result.json")
    ap.add_argument("--power-on", help="file that switches the simulated treadmill on")
    ap.add_argument("--placeholder", help="device name expected before the treadmill is on")
    ap.add_argument("--blueprint-url", help="where HA imports the spoken-cues blueprint from")
    a = ap.parse_args()
    ha = a.ha
    watch = Watch(a.mqtt_port, a.base)
    result: dict = {}
    async with aiohttp.ClientSession() as s:
        tok = await onboard(s, ha)
        h = {"Authorization": f"Bearer {tok}"}
        cfg = await (await s.get(f"{ha}/api/config", headers=h)).json()
        say("HA version:", cfg["version"])
        result["ha_version"] = cfg["version"]

        entries = await (
            await s.get(f"{ha}/api/config/config_entries/entry?domain=mqtt", headers=h)
        ).json()
        if not entries:
            r = await s.post(
                f"{ha}/api/config/config_entries/flow",
                headers=h,
                json={"handler": "mqtt", "show_advanced_options": False},
            )
            flow = await r.json()
            say(
                "mqtt flow start:",
                r.status,
                flow.get("type"),
                flow.get("step_id"),
                [f["name"] for f in flow.get("data_schema", [])],
            )
            r = await s.post(
                f"{ha}/api/config/config_entries/flow/{flow['flow_id']}",
                headers=h,
                json={"broker": "127.0.0.1", "port": a.mqtt_port},
            )
            done = await r.json()
            say(
                "mqtt flow submit:",
                r.status,
                done.get("type"),
                done.get("title"),
                done.get("errors"),
            )
            await asyncio.sleep(6)  # let discovery arrive (retained) and entities settle
        entries = await (
            await s.get(f"{ha}/api/config/config_entries/entry?domain=mqtt", headers=h)
        ).json()
        say("mqtt config entries:", [(e["title"], e["state"]) for e in entries])

        async with s.ws_connect(f"{ha}/api/websocket") as raw:
            await raw.receive_json()
            await raw.send_json({"type": "auth", "access_token": tok})
            await raw.receive_json()
            ws = WS(raw)

            async def service(domain, name, entity_id, data=None):
                """Call an HA service on one entity, as the UI does."""
                return await ws.call(
                    type="call_service",
                    domain=domain,
                    service=name,
                    target={"entity_id": entity_id},
                    service_data=data or {},
                )

            async def my_devices():
                devices = await ws.call(type="config/device_registry/list")
                return [
                    d
                    for d in devices
                    if any(i[0] == "mqtt" and "retrotread" in i[1] for i in d["identifiers"])
                ]

            async def my_entity_ids(dev):
                return sorted(
                    e["entity_id"]
                    for e in await ws.call(type="config/entity_registry/list")
                    if e["device_id"] == dev
                )

            mine = []
            for _ in range(30):
                mine = await my_devices()
                if mine:
                    break
                await asyncio.sleep(1)
            if a.power_on:
                say("\n== 5. daemon up before the treadmill: device as HA first registered it")
                d0 = mine[0] if mine else {}
                ids0 = await my_entity_ids(d0.get("id"))
                say("  device name:", repr(d0.get("name")), " model:", repr(d0.get("model")))
                say("  entity ids:", ids0)
                result["before_power_on"] = {
                    "name": d0.get("name"),
                    "model": d0.get("model"),
                    "entity_ids": ids0,
                }
                t_on = time.time()
                pathlib.Path(a.power_on).write_text("on\n")
                say(
                    f"  treadmill switched on ({a.power_on}); waiting for HA's device to rename ..."
                )
                for _ in range(120):
                    await asyncio.sleep(1)
                    mine = await my_devices()
                    if mine and mine[0]["name"] != d0.get("name"):
                        break
                d1 = mine[0]
                ids1 = await my_entity_ids(d1["id"])
                say(
                    f"  after {time.time() - t_on:.1f} s: device name:",
                    repr(d1["name"]),
                    " model:",
                    repr(d1["model"]),
                    " name_by_user:",
                    d1.get("name_by_user"),
                    " same device id:",
                    d1["id"] == d0.get("id"),
                )
                say("  entity ids unchanged:", ids1 == ids0, f"({len(ids1)} entities)")
                result["after_power_on"] = {
                    "name": d1["name"],
                    "model": d1["model"],
                    "entity_ids": ids1,
                    "same_device": d1["id"] == d0.get("id"),
                    "seconds": time.time() - t_on,
                }
                await asyncio.sleep(3)
            say(f"\nretrotread devices in HA: {len(mine)}")
            for d in mine:
                say(
                    json.dumps(
                        {
                            k: d[k]
                            for k in (
                                "name",
                                "manufacturer",
                                "model",
                                "sw_version",
                                "identifiers",
                                "via_device_id",
                            )
                        }
                    )
                )
            result["devices"] = mine
            if not mine:
                return 1
            dev_id = mine[0]["id"]
            ents = [
                e
                for e in await ws.call(type="config/entity_registry/list")
                if e["device_id"] == dev_id
            ]
            states = {st["entity_id"]: st for st in await ws.call(type="get_states")}

            def table(title):
                say(f"\n{title}")
                rows = []
                for e in sorted(ents, key=lambda e: e["entity_id"]):
                    st = states.get(e["entity_id"], {})
                    at = st.get("attributes", {})
                    row = {
                        "entity_id": e["entity_id"],
                        "name": at.get("friendly_name"),
                        "state": st.get("state"),
                        "unit": at.get("unit_of_measurement"),
                        "device_class": at.get("device_class"),
                        "state_class": at.get("state_class"),
                        "options": at.get("options"),
                        "unique_id": e["unique_id"],
                        "has_entity_name": e.get("has_entity_name"),
                        "original_name": e.get("original_name"),
                    }
                    rows.append(row)
                    say("  " + json.dumps({k: v for k, v in row.items() if v is not None}))
                return rows

            result["entities_idle"] = table(f"entities of the device ({len(ents)}), idle:")
            by_uid = {
                e["unique_id"].removeprefix("retrotread_treadmill_"): e["entity_id"] for e in ents
            }

            def show(key, st):
                s_ = st.get(by_uid[key], {})
                return s_.get("state")

            say(
                "\n== 1./3. idle: select",
                by_uid["profile"],
                "=",
                repr(show("profile", states)),
                "; phase",
                by_uid["phase"],
                "=",
                repr(show("phase", states)),
            )
            en = states.get(by_uid["energy"], {}).get("attributes", {})
            say(
                "== 4. energy",
                by_uid["energy"],
                "device_class =",
                repr(en.get("device_class")),
                "unit =",
                repr(en.get("unit_of_measurement")),
                "state_class =",
                repr(en.get("state_class")),
            )
            result["idle_before"] = {
                "select": show("profile", states),
                "phase": show("phase", states),
                "energy_attributes": en,
            }

            # ---- the coach and heart-rate entities: present, sensible, and the walker select works
            coach_keys = [
                "walker",
                "start_today",
                "plan_level",
                "today_backward",
                "sessions_week",
                "learned_speed",
                "coach_says",
                "felt_easy",
                "felt_right",
                "felt_hard",
                "pain_before",
                "pain_after",
            ]
            hr_keys = ["heart_rate", "heart_rate_source", "hr_cap", "hr_cap_state", "strap"]

            def attrs_of(key, st):
                at = st.get(by_uid.get(key), {}).get("attributes", {})
                return {
                    k: at[k]
                    for k in ("unit_of_measurement", "device_class", "options", "min", "max")
                    if k in at
                }

            def row(k, st):
                shown = st.get(by_uid.get(k), {}).get("state")
                return f"  {k:17} {by_uid.get(k)!s:42} {shown!r:30} {attrs_of(k, st)}"

            say("\n== coach entities (idle):")
            for k in coach_keys:
                say(row(k, states))
            say("== heart-rate entities (idle):")
            for k in hr_keys:
                say(row(k, states))
            result["coach_idle"] = {
                k: states.get(by_uid.get(k), {}).get("state") for k in coach_keys
            }
            result["hr_idle"] = {k: states.get(by_uid.get(k), {}).get("state") for k in hr_keys}
            if "walker" in by_uid:
                tw = time.time()
                say(f"  select.select_option {by_uid['walker']} -> ben")
                await service("select", "select_option", by_uid["walker"], {"option": "ben"})
                await asyncio.sleep(3)
                states = {st["entity_id"]: st for st in await ws.call(type="get_states")}
                say("    cmd/result:", [p for _, p in watch.since(tw, "cmd/result")])
                for k in ("walker", "plan_level", "coach_says", "sessions_week"):
                    say(f"    {k}: {states.get(by_uid.get(k), {}).get('state')!r}")
                tw = time.time()
                say(
                    "  button.press",
                    by_uid["felt_right"],
                    "; number.set_value",
                    by_uid["pain_after"],
                )
                await service("button", "press", by_uid["felt_right"])
                await service("number", "set_value", by_uid["pain_after"], {"value": 2})
                await asyncio.sleep(3)
                states = {st["entity_id"]: st for st in await ws.call(type="get_states")}
                say("    cmd:", [p for _, p in watch.since(tw, "cmd")])
                say("    cmd/result:", [p for _, p in watch.since(tw, "cmd/result")])
                say(f"    pain_after: {states.get(by_uid.get('pain_after'), {}).get('state')!r}")
                await service("select", "select_option", by_uid["walker"], {"option": "anna"})
                await asyncio.sleep(2)
                states = {st["entity_id"]: st for st in await ws.call(type="get_states")}
                say(
                    f"  walker back to anna: {states.get(by_uid['walker'], {}).get('state')!r},"
                    f" plan_level {states.get(by_uid.get('plan_level'), {}).get('state')!r}"
                )
            ev_id = by_uid.get("events")
            say(
                "== event entity:",
                ev_id,
                json.dumps(states.get(ev_id, {}).get("attributes", {}))[:600],
            )

            # ---- the blueprint: imported from its URL, saved, and an automation made from it
            automation_id = None
            if a.blueprint_url:
                say(f"\n== 6. blueprint/import {a.blueprint_url}")
                imp = await ws.call(type="blueprint/import", url=a.blueprint_url)
                say(
                    "  suggested_filename:",
                    imp.get("suggested_filename"),
                    " validation_errors:",
                    imp.get("validation_errors"),
                    " exists:",
                    imp.get("exists"),
                )
                say("  inputs:", list(imp["blueprint"]["metadata"]["input"]))
                result["blueprint_import"] = {
                    k: imp.get(k) for k in ("suggested_filename", "validation_errors")
                }
                path = imp["suggested_filename"] + ".yaml"
                saved = await ws.call(
                    type="blueprint/save",
                    domain="automation",
                    path=path,
                    yaml=imp["raw_data"],
                    source_url=a.blueprint_url,
                )
                say("  blueprint/save:", saved)
                listed = await ws.call(type="blueprint/list", domain="automation")
                say(
                    "  blueprint/list:",
                    {
                        k: (v.get("metadata", {}).get("name") if isinstance(v, dict) else v)
                        for k, v in listed.items()
                    },
                )
                automation_id = "retrotread_spoken_cues"
                body = {
                    "alias": "Speak retrotread cues",
                    "description": "",
                    "use_blueprint": {
                        "path": path,
                        "input": {
                            "events_entity": ev_id,
                            "tts_entity": "tts.fake_voice",
                            "speaker": "media_player.treadmill_speaker",
                        },
                    },
                }
                r = await s.post(
                    f"{ha}/api/config/automation/config/{automation_id}", headers=h, json=body
                )
                say("  POST automation config:", r.status, await r.text())
                await asyncio.sleep(3)
                autos = {
                    st["entity_id"]: st
                    for st in await ws.call(type="get_states")
                    if st["entity_id"].startswith("automation.")
                }
                say(
                    "  automations:",
                    {k: (v["state"], v["attributes"].get("id")) for k, v in autos.items()},
                )
                result["automations"] = {k: v["state"] for k, v in autos.items()}

            async def refresh():
                return {st["entity_id"]: st for st in await ws.call(type="get_states")}

            def brief(st):
                keys = [
                    "state",
                    "phase",
                    "speed",
                    "incline",
                    "elapsed",
                    "distance",
                    "profile",
                    "link",
                ]
                return {k: st.get(by_uid.get(k), {}).get("state") for k in keys if k in by_uid}

            # ---- select a profile: HA publishes the select's command_template to <base>/cmd
            t0 = time.time()
            say(f"\nselect.select_option {by_uid['profile']} -> {a.profile}")
            await service("select", "select_option", by_uid["profile"], {"option": a.profile})
            series = []
            for _ in range(int(a.run_s)):
                await asyncio.sleep(1)
                states = await refresh()
                series.append((round(time.time() - t0, 1), brief(states)))
            for t, b in series[::3]:
                say(f"  t+{t:5.1f}s HA: {b}")
            say("  cmd seen on broker:", [p for _, p in watch.since(t0, "cmd")])
            say("  cmd/result:", [p for _, p in watch.since(t0, "cmd/result")])
            say(
                "  daemon state (broker):",
                {
                    k: (watch.last_state() or {}).get(k)
                    for k in ("state", "profile", "phase", "session_id")
                },
            )
            result["after_select"] = {
                "series": series,
                "cmd": watch.since(t0, "cmd"),
                "result": watch.since(t0, "cmd/result"),
                "state": watch.last_state(),
            }
            result["entities_running"] = table("entities while running:")

            # ---- 2. a refused command: another profile while one runs
            t2 = time.time()
            say(f"\n== 2. select.select_option {by_uid['profile']} -> build-up, {a.profile} runs")
            await service("select", "select_option", by_uid["profile"], {"option": "build-up"})
            await asyncio.sleep(3)
            states = await refresh()
            ev = states.get(ev_id, {})
            say("  cmd/result on broker:", [p for _, p in watch.since(t2, "cmd/result")])
            say("  event entity:", ev_id, "state =", ev.get("state"))
            say("  attributes:", json.dumps(ev.get("attributes", {})))
            say("  select now shows:", show("profile", states))
            result["refused"] = {"result": watch.since(t2, "cmd/result"), "event_state": ev}

            async def press(key, wait=6):
                t1 = time.time()
                say(f"\nbutton.press {by_uid[key]}")
                await service("button", "press", by_uid[key])
                await asyncio.sleep(wait)
                st = await refresh()
                out = {
                    "cmd": [p for _, p in watch.since(t1, "cmd")],
                    "result": [p for _, p in watch.since(t1, "cmd/result")],
                    "daemon_state": {
                        k: (watch.last_state() or {}).get(k) for k in ("state", "profile", "phase")
                    },
                    "ha": brief(st),
                }
                for k, v in out.items():
                    say(f"  {k}: {v}")
                return out

            result["stop1"] = await press("stop")
            result["start_button"] = await press("start", wait=8)
            result["pause"] = await press("pause")
            result["resume"] = await press("resume")
            result["stop2"] = await press("stop")
            await asyncio.sleep(2)
            states = await refresh()
            result["entities_end"] = table("entities after stop:")
            say(
                "\n== 1./3. idle after sessions: select =",
                repr(show("profile", states)),
                "; phase =",
                repr(show("phase", states)),
                "; daemon state:",
                {
                    k: (watch.last_state() or {}).get(k)
                    for k in ("state", "profile", "phase", "session_id")
                },
            )
            result["idle_after"] = {
                "select": show("profile", states),
                "phase": show("phase", states),
            }

            # ---- 6. the automation from the blueprint fires on turn_required
            t3 = time.time()
            say(f"\n== 6. start {a.profile}, skip to its backward phase: turn_required")
            await service("select", "select_option", by_uid["profile"], {"option": a.profile})
            await asyncio.sleep(8)
            await service("button", "press", by_uid["skip"])
            for _ in range(20):
                await asyncio.sleep(1)
                if any('"turn_required"' in p for _, p in watch.since(t3, "event")):
                    break
            await asyncio.sleep(6)
            say("  events on broker:", [json.loads(p)["type"] for _, p in watch.since(t3, "event")])
            states = await refresh()
            say(
                "  event entity attributes:",
                json.dumps(states.get(ev_id, {}).get("attributes", {}))[:500],
            )
            if automation_id:
                traces = await ws.call(
                    type="trace/list", domain="automation", item_id=automation_id
                )
                say(f"  automation traces: {len(traces)}")
                rows = []
                for tr in traces:
                    full = await ws.call(
                        type="trace/get",
                        domain="automation",
                        item_id=automation_id,
                        run_id=tr["run_id"],
                    )
                    trig = (
                        full.get("trace", {}).get("trigger/0", [{}])[0].get("changed_variables", {})
                    )
                    to_state = (trig.get("trigger") or {}).get("to_state") or {}
                    kind = to_state.get("attributes", {}).get("event_type")
                    steps = full.get("trace", {})
                    action = steps.get("action/0", [{}])[0]
                    cond = steps.get("condition/0", [{}])[0].get("result", {})
                    row = {
                        "start": tr.get("timestamp", {}).get("start"),
                        "event_type": kind,
                        "condition": cond.get("result"),
                        "state": tr.get("state"),
                        "script_execution": tr.get("script_execution"),
                        "service": (action.get("result") or {}).get("params"),
                        "error": tr.get("error") or action.get("error"),
                    }
                    rows.append(row)
                    say("   ", json.dumps(row)[:700])
                result["traces"] = rows
            spoken = pathlib.Path("/root/ha-config/spoken.jsonl")
            say("  fake speaker heard:")
            for line in spoken.read_text().splitlines() if spoken.exists() else []:
                say("    " + line[:300])
            result["stop3"] = await press("stop")

            # ---- the logbook shows the events
            logbook = await ws.call(
                type="logbook/get_events",
                start_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 120)),
                entity_ids=[ev_id],
            )
            say(f"\n== logbook entries for {ev_id}: {len(logbook)}")
            for e in logbook[-12:]:
                say(
                    "   ",
                    json.dumps(
                        {
                            k: e.get(k)
                            for k in ("when", "state", "message", "name", "context_event_type")
                        }
                    )[:300],
                )
            result["logbook"] = logbook
            logs = await ws.call(type="system_log/list")
            say(f"\nsystem_log entries (warnings/errors kept by HA): {len(logs)}")
            for e in logs:
                say(
                    "  "
                    + json.dumps(
                        {k: e.get(k) for k in ("level", "name", "message", "source", "count")}
                    )[:1500]
                )
            result["system_log"] = logs
    pathlib.Path(a.json_out).write_text(json.dumps(result, indent=1, default=str))
    say(f"\nfull result: {a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
