"""The web page's server as a page's script sees it, no browser: the token, the Origin, the
WebSocket speaking the MQTT contract through the one command desk, with no broker at all;
the session history and its plots."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from retrotread.coach.walkers import WalkerConfig
from retrotread.config import Config, load_config
from retrotread.errors import ConfigError
from retrotread.mqtt.commands import CommandError, parse_command
from retrotread.session.log import read_session
from retrotread.web.access import load_or_create_token, page_url, token_matches
from retrotread.web.server import same_origin
from tests.broker import Broker
from tests.clihelpers import one_line_error, run_cli
from tests.test_daemon_mqtt import Phone, until
from tests.test_reliability_mqtt import DEEP, HOSTILE, assert_one_result_per_id
from tests.webhelpers import Page, web_rig


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "ws"


# ---------------------------------------------------------------------- config and token


def test_off_unless_listen_is_set(tmp_path: Path) -> None:
    assert Config().web.listen is None
    cfg = tmp_path / "c.toml"
    cfg.write_text('[web]\nlisten = "[::]:8080"\n', encoding="utf-8")
    assert load_config(cfg).web.address == ("::", 8080)
    cfg.write_text('[web]\nlisten = ":8080"\n', encoding="utf-8")
    assert load_config(cfg).web.address == ("0.0.0.0", 8080)
    for bad, why in (("8080", "is not HOST:PORT"), ("h:0", "port 0 is out of range")):
        cfg.write_text(f'[web]\nlisten = "{bad}"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=why):
            load_config(cfg)
    cfg.write_text('[web]\nlisten = ":1"\ncert_file = "c.pem"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"web.cert_file = .*no such file"):
        load_config(cfg)


def test_token_file_beside_the_sessions_dir_by_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sessions]\ndir = "state/sessions"\n[web]\nlisten = ":8080"\n')
    assert load_config(cfg).web_token_file == tmp_path / "state" / "web-token"


def test_token_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "web-token"
    token = load_or_create_token(path)
    assert len(token) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(path) == token
    assert load_or_create_token(tmp_path / "other") != token
    assert token_matches(token, token)
    assert not token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"), token)
    assert not token_matches("", token)
    path.write_text("short\n")
    with pytest.raises(ConfigError, match=r"holds no usable token.*delete it"):
        load_or_create_token(path)


def test_page_url() -> None:
    assert page_url("192.168.1.5", 8080, "T" * 32) == f"http://192.168.1.5:8080/t/{'T' * 32}/"
    assert page_url("::1", 443, "x" * 32, tls=True) == f"https://[::1]/t/{'x' * 32}/"
    assert page_url("h", 1, "k" * 32, base="https://walk.example/") == (
        f"https://walk.example/t/{'k' * 32}/"
    )


# ---------------------------------------------------------------------- access


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://WALK.lan:8080", "walk.lan:8080", True),
        ("https://walk.example", "walk.example", True),  # TLS ended by a proxy
        ("https://walk.example", "walk.example:443", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
        ("http://localhost:8080", "127.0.0.1:8080", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("file://", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080", False),
    ],
)
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


async def test_every_request_without_the_token_is_refused(tmp_path: Path) -> None:
    async with web_rig(tmp_path) as r, aiohttp.ClientSession() as http:
        root = f"http://127.0.0.1:{r.port}"
        wrong = "A" * len(r.token) if r.token[0] != "A" else "B" * len(r.token)
        for path in (
            "/",
            "/app.js",
            "/ws",
            "/t/",
            f"/t/{wrong}/",
            f"/t/{wrong}/ws",
            f"/t/{wrong}/sessions",
            f"/t/{r.token[:-1]}/",
            f"/t/{r.token}x/",
            f"/t/{r.token}",
            f"/T/{r.token}/",
        ):
            async with http.get(root + path) as resp:
                assert resp.status == 403, path
                assert "needs the token" in await resp.text()
                assert "Set-Cookie" not in resp.headers
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(f"ws://127.0.0.1:{r.port}/t/{wrong}/ws")
        assert caught.value.status == 403
        async with http.get(r.base) as resp:
            assert resp.status == 200
            page = await resp.text()
            assert 'id="stop"' in page
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["Cache-Control"] == "no-store"
            assert "Set-Cookie" not in resp.headers
        for name in (
            "app.js",
            "style.css",
            "manifest.webmanifest",
            "icon.svg",
            "icon-192.png",
            "icon-512.png",
        ):
            async with http.get(r.base + name) as resp:
                assert resp.status == 200, name
                assert "Set-Cookie" not in resp.headers
        async with http.get(r.base + "manifest.webmanifest") as resp:
            manifest = await resp.json(content_type=None)
            assert manifest["start_url"] == "./"  # the token's address, kept when installed
            assert manifest["display"] == "standalone"
            assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
        assert r.daemon.web.refused >= 12


async def test_a_page_of_another_site_is_refused(tmp_path: Path) -> None:
    async with web_rig(tmp_path) as r, aiohttp.ClientSession() as http:
        for origin in ("http://evil.example", "null", f"http://localhost:{r.port}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await http.ws_connect(ws_url(r.base), headers={"Origin": origin})
            assert caught.value.status == 403, origin
        own = f"http://127.0.0.1:{r.port}"
        async with Page(ws_url(r.base), Origin=own) as page:
            await until(lambda: bool(page.on("state")))


async def test_the_token_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with web_rig(tmp_path) as r, aiohttp.ClientSession() as http:
        wrong = r.token[:-3] + "zzz"
        for path in (f"/t/{wrong}/", f"/t/{r.token}/nope", f"/t/{r.token}/"):
            async with http.get(f"http://127.0.0.1:{r.port}{path}") as resp:
                await resp.read()
        async with Page(ws_url(r.base)) as page:
            assert (await page.command({"action": "pause"}))["ok"] is False
            await page.send(b"\xff\xfe")
            await until(lambda: len(page.on("cmd/result")) == 2)
        # Malformed requests, which aiohttp logs with their request line.
        for raw in (
            f"GET /t/{r.token}/\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET /t/{r.token}/ HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
            f"GET /t/{r.token}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
            writer.write(raw.encode())
            assert (await reader.read(100)).startswith(b"HTTP/1.")
            writer.close()
            await writer.wait_closed()
    assert any(rec.name.startswith("aiohttp") for rec in caplog.records)  # it did log them
    text = caplog.text + "\n".join(rec.getMessage() for rec in caplog.records)
    assert "refused a request from 127.0.0.1: no valid token" in text
    assert r.token not in text
    assert wrong not in text
    assert r.token[:12] not in text


# ---------------------------------------------------------------------- the contract


async def test_the_page_runs_a_session_with_no_broker(tmp_path: Path) -> None:
    async with web_rig(tmp_path) as r, Page(ws_url(r.base)) as page:
        assert r.daemon.bridge is None  # no MQTT at all
        await until(lambda: bool(page.on("state")) and bool(page.on("profiles")))
        assert page.frames[0] == ("availability", "online")
        await until(lambda: page.on("state")[-1] == r.daemon.runner.state())
        assert "turn-test" in [p["name"] for p in page.on("profiles")[0]]
        res = await page.command({"action": "start", "profile": "turn-test"})
        assert res == {"id": "p1", "action": "start", "ok": True, "error": None}
        await until(lambda: page.on("state")[-1]["state"] == "running")
        await until(lambda: any(w.data == b"\x07" for w in r.sim.accepted))  # FTMS Start
        assert r.sim.accepted[0].data == b"\x00"  # after Request Control
        await until(lambda: any((t["speed_kmh"] or 0) > 0.3 for t in page.on("telemetry")), 15)
        t = page.on("telemetry")[-1]
        assert t["phase"] == "warm-up" and t["direction"] == "forward"
        assert t["session_id"] == page.on("state")[-1]["session_id"]
        await until(lambda: any(e["type"] == "turn_required" for e in page.on("event")), 20)
        turn = next(e for e in page.on("event") if e["type"] == "turn_required")
        assert "backward" in turn["message"].lower() or "turn" in turn["message"].lower()
        await until(lambda: page.on("state")[-1]["state"] == "turning")
        assert (await page.command({"action": "resume"}))["ok"] is True
        await until(lambda: page.on("state")[-1]["state"] == "running")
        stops = r.stops()
        assert (await page.command({"action": "stop"}))["ok"] is True
        assert r.stops() == stops + 1
        assert r.sim.accepted[-1].data == b"\x08\x01"
        await until(lambda: page.on("state")[-1]["state"] == "stopped")
        finished = [e for e in page.on("event") if e["type"] == "session_finished"]
        assert finished[0]["outcome"] == "stopped"


async def test_a_walker_is_chosen_and_starts_today_from_the_page(tmp_path: Path) -> None:
    """What the page's walker box does: the walkers and today's session come with the
    current walker's status; choosing one and starting today are the MQTT commands."""
    walkers = (WalkerConfig(name="anna", plan="retro-start"), WalkerConfig(name="ben"))
    async with web_rig(tmp_path, walkers=walkers) as r, Page(ws_url(r.base)) as page:
        await until(lambda: bool(page.on("walker")), 15)
        current = page.on("walker")[-1]
        assert current["walker"] == "anna" and current["walkers"] == ["anna", "ben"]
        assert current["plan"] == "retro-start" and current["today"]["backward_min"] > 0
        assert (await page.command({"action": "walker", "walker": "ben"}))["ok"] is True
        await until(lambda: page.on("walker")[-1]["walker"] == "ben")
        assert page.on("walker")[-1]["today"]["backward_min"] > 0  # the plan's first level
        refused = await page.command({"action": "start", "today": True, "walker": "carla"})
        assert refused["ok"] is False and "carla" in refused["error"]
        assert r.daemon.runner.session is None
        res = await page.command({"action": "start", "today": True, "walker": "ben"})
        assert res["ok"] is True, res
        await until(lambda: r.daemon.runner.state_name() == "running")
        assert (await page.command({"action": "stop"}))["ok"] is True
        await until(lambda: r.daemon.runner.session is None)
        header = read_session(r.daemon.runner.last_log).header  # type: ignore[arg-type]
        assert header["walker"] == "ben" and header["plan"]["name"] == "retro-start"


async def test_the_websocket_refuses_what_mqtt_refuses(tmp_path: Path) -> None:
    """The reliability suite's hostile payloads, as text and as binary frames: the same
    answer as on MQTT (one parser), and the daemon goes on."""
    async with web_rig(tmp_path) as r, Page(ws_url(r.base)) as page:
        await until(lambda: bool(page.on("state")))
        assert (await page.command({"action": "start", "profile": "turn-test"}))["ok"]
        await until(lambda: r.daemon.runner.state_name() == "running")
        payloads = [p for p, *_ in HOSTILE] + [b"\xff\xfe not utf-8", b"{not json", b"x" * 5000]
        for i, payload in enumerate(payloads):
            before = len(page.on("cmd/result"))
            await page.send(payload if i % 2 else payload.decode("utf-8", "replace"))
            await until(lambda b=before: len(page.on("cmd/result")) > b)
            got = page.on("cmd/result")[-1]
            data = payload if i % 2 else payload.decode("utf-8", "replace").encode()
            with pytest.raises(CommandError) as expected:
                parse_command(data)
            assert got == {
                "id": expected.value.command_id,
                "action": expected.value.action,
                "ok": False,
                "error": expected.value.message,
            }
        assert "nests 2000 levels deep" in page.on("cmd/result")[1]["error"]
        assert r.daemon.runner.state_name() == "running"  # nothing refused was done
        # Refusals are told as events too (a few a second: a flood is answered, not echoed).
        refused = lambda: [e for e in page.on("event") if e["type"] == "command_refused"]  # noqa: E731
        await until(lambda: bool(refused()))
        answers = [(x["id"], x["error"]) for x in page.on("cmd/result")]
        assert all((e["id"], e["error"]) in answers for e in refused())
        assert len(refused()) <= len(payloads)
        assert (await page.command({"action": "pause"}))["ok"] is True
        assert (await page.command({"action": "stop"}))["ok"] is True


async def test_a_flood_gets_one_result_per_command_and_the_page_lives(tmp_path: Path) -> None:
    async with web_rig(tmp_path) as r, Page(ws_url(r.base)) as page:
        await until(lambda: bool(page.on("state")))
        assert (await page.command({"action": "start", "profile": "turn-test"}))["ok"]
        kinds: list[dict[str, Any]] = [
            {"action": "pause"},
            {"action": "resume"},
            {"action": "set", "speed_kmh": 0.5},
            {"action": "dance"},
            {"action": "skip", "extra": 1},
        ]
        assert page.ws is not None
        await asyncio.gather(*(page.send({**kinds[i % len(kinds)], "id": i}) for i in range(2000)))
        await until(lambda: len(page.on("cmd/result")) >= 2001, 60)
        assert (await page.command({"action": "stop"}))["ok"] is True
        await until(lambda: r.daemon.runner.session is None)
        await asyncio.sleep(0.3)  # anything extra would arrive now
        assert_one_result_per_id(page.on("cmd/result"), 2000)
        busy = [x for x in page.on("cmd/result") if "too many commands" in (x["error"] or "")]
        assert len(busy) == r.daemon.desk.refused_busy
        assert r.daemon.desk.received == r.daemon.desk.answered == 2002
        # The page is still served and still told the truth.
        assert page.on("state")[-1] == r.daemon.runner.state()
        assert (await page.command({"action": "pause"}))["error"] == (
            "nothing to pause: no session is running"
        )


async def test_one_desk_for_mqtt_and_the_page(broker: Broker, tmp_path: Path) -> None:
    """A command from the page and one from MQTT go through the same desk; each answer goes
    back the way its command came; a refusal is told on both."""
    async with (
        web_rig(tmp_path, mqtt_port=broker.port) as r,
        Phone(broker.port) as phone,
        Page(ws_url(r.base)) as page,
    ):
        assert r.daemon.bridge.desk is r.daemon.desk
        await until(lambda: r.daemon.bridge.connected and bool(page.on("state")))
        assert (await page.command({"action": "start", "profile": "turn-test"}))["ok"]
        res = await phone.command({"action": "start", "profile": "turn-test"})
        assert res["ok"] is False and "already running" in res["error"]
        assert [x["id"] for x in page.on("cmd/result")] == ["p1"]  # not the phone's answer
        assert "p1" not in [x["id"] for x in phone.on("cmd/result")]
        await until(lambda: any(e["type"] == "command_refused" for e in page.on("event")))
        told = next(e for e in page.on("event") if e["type"] == "command_refused")
        assert told["id"] == res["id"]
        await page.send(DEEP)
        await until(
            lambda: any(
                e["type"] == "command_refused" and "nests" in e["message"]
                for e in phone.on("event")
            )
        )
        # Telemetry and state reach both, the same payloads.
        await until(lambda: bool(phone.on("telemetry")) and bool(page.on("telemetry")))
        assert set(phone.on("telemetry")[-1]) == set(page.on("telemetry")[-1])
        assert (await phone.command({"action": "stop"}))["ok"] is True
        await until(lambda: page.on("state")[-1]["state"] == "stopped")
        assert phone.on("state")[-1] == page.on("state")[-1]


async def test_history_lists_sessions_and_serves_their_plots(tmp_path: Path) -> None:
    async with web_rig(tmp_path) as r, Page(ws_url(r.base)) as page:
        await until(lambda: bool(page.on("state")))
        assert (await page.command({"action": "start", "profile": "turn-test"}))["ok"]
        await until(lambda: any((t["speed_kmh"] or 0) > 0.3 for t in page.on("telemetry")), 15)
        assert (await page.command({"action": "stop"}))["ok"]
        await until(lambda: r.daemon.runner.session is None)
        async with aiohttp.ClientSession() as http:
            async with http.get(r.base + "sessions") as resp:
                assert resp.status == 200
                sessions = await resp.json()
            assert len(sessions) == 1
            s = sessions[0]
            assert s["profile"] == "turn-test" and s["outcome"] == "stopped"
            assert s["name"] == r.daemon.runner.last_log.name  # type: ignore[union-attr]
            assert s["duration_s"] > 0
            async with http.get(f"{r.base}sessions/{s['name']}/plot.png") as resp:
                assert resp.status == 200
                assert resp.content_type == "image/png"
                png = await resp.read()
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
            for bad in ("../web-token", "..%2F..%2Fweb-token", "nope.jsonl", "x.txt"):
                async with http.get(f"{r.base}sessions/{bad}/plot.png") as resp:
                    assert resp.status in (403, 404), bad
            wrong = r.base.replace(r.token, r.token[::-1])
            async with http.get(f"{wrong}sessions/{s['name']}/plot.png") as resp:
                assert resp.status == 403


async def test_too_many_pages_are_refused_politely(tmp_path: Path) -> None:
    async with web_rig(tmp_path, max_clients=2) as r:
        async with Page(ws_url(r.base)) as a, Page(ws_url(r.base)) as b:
            await until(lambda: bool(a.on("state")) and bool(b.on("state")))
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await http.ws_connect(ws_url(r.base))
                assert caught.value.status == 503
        async with Page(ws_url(r.base)) as c:  # closed pages free their place
            await until(lambda: bool(c.on("state")))


# ---------------------------------------------------------------------- retrotread web url


def test_web_url_prints_the_address_and_qr_codes(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sessions]\ndir = "state/sessions"\n[web]\nlisten = "127.0.0.1:8123"\n')
    p = run_cli("web", "url", "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    token = (tmp_path / "state" / "web-token").read_text().strip()  # made on first use
    assert lines[0] == f"http://127.0.0.1:8123/t/{token}/"
    assert sum("█" in line for line in lines) >= 15  # the QR code, in the terminal
    png = tmp_path / "state" / "web-qr.png"
    assert f"QR code: {png}" in lines
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert stat.S_IMODE(png.stat().st_mode) == 0o600  # it holds the key
    again = run_cli("web", "url", "--no-qr", "--host", "walk.lan", "-c", str(cfg))
    assert again.stdout.splitlines() == [f"http://walk.lan:8123/t/{token}/"]  # the same token
    assert load_config(cfg).web_token_file.read_text().strip() == token  # the daemon's too


def test_web_url_says_how_to_turn_the_page_on(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[sessions]\ndir = "{tmp_path}/s"\n')
    line = one_line_error(run_cli("web", "url", "-c", str(cfg)))
    assert 'the web page is off: set [web] listen (e.g. listen = "0.0.0.0:8080")' in line
    assert not (tmp_path / "web-token").exists()
