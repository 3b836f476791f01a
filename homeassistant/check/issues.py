"""Print HA repairs issues and system_log entries (uses the token check.py saved)."""

import asyncio
import json
import pathlib

import aiohttp

TOK = pathlib.Path("/root/ha-config/.check-token").read_text().strip()


async def main():
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect("http://127.0.0.1:18123/api/websocket") as ws,
    ):
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": TOK})
        await ws.receive_json()
        await ws.send_json({"id": 1, "type": "repairs/list_issues"})
        r = await ws.receive_json()
        print(
            "repairs issues:",
            json.dumps([(i["domain"], i["issue_id"]) for i in r["result"]["issues"]]),
        )
        await ws.send_json({"id": 2, "type": "system_log/list"})
        r = await ws.receive_json()
        print(
            "system_log:",
            json.dumps([(e["level"], e["name"], e["message"][0][:120]) for e in r["result"]]),
        )


asyncio.run(main())
