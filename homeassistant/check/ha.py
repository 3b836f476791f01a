"""Tiny HA REST client for the retrotread check (uses the token check.py saved).
    python ha.py states                      # retrotread device entities: state, unit, class
    python ha.py call DOMAIN SERVICE ENTITY_ID [JSON_DATA]
Run with the HA venv python inside the chroot."""

import json
import pathlib
import sys
import urllib.request

HA = "http://127.0.0.1:18123"
TOK = pathlib.Path("/root/ha-config/.check-token").read_text().strip()


def req(method, path, body=None):
    r = urllib.request.Request(
        HA + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOK}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(r, timeout=20) as resp:
        return json.loads(resp.read() or "null")


if sys.argv[1] == "states":
    for st in sorted(req("GET", "/api/states"), key=lambda s: s["entity_id"]):
        if st["entity_id"].split(".", 1)[1].startswith(("retro_sim_", "treadmill_")):
            at = st["attributes"]
            print(
                f"{st['entity_id']:45} {st['state']:34} {at.get('unit_of_measurement') or '':5} "
                f"{at.get('device_class') or ''}"
            )
elif sys.argv[1] == "call":
    dom, svc, ent = sys.argv[2:5]
    data = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    print(req("POST", f"/api/services/{dom}/{svc}", {"entity_id": ent, **data}))
