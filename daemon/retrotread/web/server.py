"""The phone page and its WebSocket, served by the daemon on aiohttp (the only module that
imports it).

The WebSocket speaks the MQTT contract (SPEC.md §3): every frame the page gets is
``{"topic": T, "payload": P}`` where T is the topic under ``<base>/`` (``state``,
``telemetry``, ``event``, ``walker``, ``walker/<name>``, ``profiles``, ``availability``,
``cmd/result``) and P is exactly what MQTT carries there; every frame the page sends is a
``cmd`` payload, handed to the daemon's command desk (the one MQTT uses), whose one result
comes back to that page as ``cmd/result``. ``alive`` frames every ``alive_s`` let the page
notice a daemon that went away without closing the connection.

Access: every request's path starts with ``/t/<token>/`` (web/access.py); anything else,
a wrong token, or an ``Origin`` that is not the page's own is refused before any handler
runs. No cookies; the access log is off, because the token is in every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web
from yarl import URL

from retrotread.backoff import Backoff
from retrotread.config import WebConfig
from retrotread.errors import RetrotreadError
from retrotread.mqtt.desk import CommandDesk, describe, encode_json, failed
from retrotread.web.access import PREFIX, load_or_create_token, token_matches
from retrotread.web.history import History, NoSuchSession

log = logging.getLogger(__name__)

STATIC = {
    "": ("index.html", "text/html"),
    "app.js": ("app.js", "text/javascript"),
    "style.css": ("style.css", "text/css"),
    "manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
    "icon.svg": ("icon.svg", "image/svg+xml"),
    "icon-192.png": ("icon-192.png", "image/png"),
    "icon-512.png": ("icon-512.png", "image/png"),
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
REFUSED = "refused: this address needs the token from 'retrotread web url'\n"


AIOHTTP_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.websocket")


class HideToken(logging.Filter):
    """Takes the token out of aiohttp's own log records (a malformed request is logged with
    its request line, and the token is in every path)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = message.replace(self.token, "***")
        record.args = None
        if record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "***")
        return True


class Site(Protocol):
    """What the page needs from the daemon besides its outputs and the command desk."""

    def state(self) -> dict[str, Any]: ...

    def profiles(self) -> list[dict[str, Any]]: ...

    def walkers(self) -> list[tuple[str, dict[str, Any]]]: ...


def topic_of(kind: str, payload: dict[str, Any]) -> str | None:
    """The topic under ``<base>/`` that an output of ``kind`` goes to (as MQTT's bridge)."""
    if kind in ("state", "telemetry", "event"):
        return kind
    if kind == "walker":
        return f"walker/{payload.get('walker')}"
    if kind == "walker_current":
        return "walker"
    return None


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` names the host and port the request was sent to.

    The scheme is the origin's own (behind a proxy that ends TLS the daemon sees http).
    """
    try:
        seen = URL(origin)
        asked = URL(f"{seen.scheme}://{host}")
    except ValueError:
        return False
    if seen.scheme not in ("http", "https") or not seen.host or seen.path not in ("", "/"):
        return False
    return (seen.host.lower(), seen.port) == ((asked.host or "").lower(), asked.port)


def frame(topic: str, payload: Any) -> str:
    return encode_json({"topic": topic, "payload": payload}).decode()


class _Page:
    """One open page: its WebSocket and what waits to be sent to it, in order.

    Telemetry is dropped when more than ``telemetry_backlog`` samples wait; a page that
    lets ``limit`` frames pile up is closed (it is not reading).
    """

    def __init__(self, ws: web.WebSocketResponse, remote: str, *, limit: int = 10_000) -> None:
        self.ws = ws
        self.remote = remote
        self.limit = limit
        self.telemetry_backlog = 50
        self.outbox: deque[tuple[str, str]] = deque()
        self.telemetry = 0
        self.dropped = 0
        self.finishing = False  # sends what waits, then closes
        self.closed = False  # closes now
        self.writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def push(self, topic: str, text: str) -> None:
        if self.closed or self.finishing:
            return
        if topic == "telemetry":
            if self.telemetry >= self.telemetry_backlog:
                self.dropped += 1
                return
            self.telemetry += 1
        if len(self.outbox) >= self.limit:
            log.warning("web page: the page at %s is not reading; closing it", self.remote)
            self.close()
            return
        self.outbox.append((topic, text))
        if len(self.outbox) >= 256:
            self.room.clear()  # read no more of its commands until it reads its answers
        self._wake.set()

    def reply(self, result: dict[str, Any]) -> None:
        """The desk's answer to a command from this page."""
        if not self.closed:  # even while finishing: the answers of the last commands
            self.outbox.append(("cmd/result", frame("cmd/result", result)))
            self._wake.set()

    def finish(self) -> None:
        self.finishing = True
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self.outbox.clear()
        self.room.set()
        self._wake.set()

    async def write(self) -> None:
        """Send what waits, in order, until the page is closed or finished."""
        while not self.closed:
            if not self.outbox:
                if self.finishing:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            topic, text = self.outbox.popleft()
            if topic == "telemetry":
                self.telemetry -= 1
            if len(self.outbox) < 64:
                self.room.set()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):  # closing, or gone under us
                self.close()
        self.closed = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()


class WebServer:
    """The page, its files, its WebSocket and the session history, on ``[web] listen``."""

    def __init__(
        self,
        settings: WebConfig,
        site: Site,
        desk: CommandDesk,
        *,
        token_file: Path,
        sessions_dir: Path,
        alive_s: float = 2.0,
        backoff: Backoff | None = None,
    ) -> None:
        address = settings.address
        if address is None:
            raise RetrotreadError("the web page is off: [web] listen is not set")
        self.settings = settings
        self.host, self.port = address
        self.site = site
        self.desk = desk
        self.token_file = token_file
        self.history = History(sessions_dir)
        self.alive_s = alive_s
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.status = "starting"
        self.listening = asyncio.Event()
        self.bound_port: int | None = None
        self.refused = 0
        self.pages: set[_Page] = set()
        self._token: str | None = None
        self._runner: web.AppRunner | None = None
        self._warned: set[str] = set()
        self._filter: HideToken | None = None
        self._closing = False

    # ------------------------------------------------------------------ outputs

    def output(self, kind: str, payload: dict[str, Any]) -> None:
        """Runner and coach listener: push one output to every open page, never blocking."""
        topic = topic_of(kind, payload)
        if topic is None or not self.pages:
            return
        text = frame(topic, payload)
        for page in list(self.pages):
            page.push(topic, text)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Listen until cancelled; a port or token that cannot be had is tried again."""
        failures = 0
        try:
            while not self._closing:
                try:
                    await self._start()
                except (OSError, RetrotreadError) as exc:
                    failures += 1
                    delay = self.backoff.delay(failures)
                    why = describe(exc)
                    log.log(
                        logging.WARNING if failures == 1 else logging.DEBUG,
                        "web page: cannot listen on %s:%s: %s; retrying in %.0f s",
                        self.host,
                        self.port,
                        why,
                        delay,
                    )
                    self.status = f"cannot listen: {why}"
                    await self._cleanup()
                    await asyncio.sleep(delay)
                    continue
                await self._alive_loop()
        finally:
            await self._cleanup()

    async def _start(self) -> None:
        self._token = await asyncio.to_thread(load_or_create_token, self.token_file)
        self._hide(self._token)
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.on_response_prepare.append(_secure_headers)
        app.router.add_get(PREFIX + "{token}/ws", self._websocket)
        app.router.add_get(PREFIX + "{token}/sessions", self._sessions)
        app.router.add_get(PREFIX + "{token}/sessions/{name}/plot.png", self._plot)
        app.router.add_get(PREFIX + "{token}/{file:[a-z0-9.-]*}", self._static)
        # No access log: the token is part of every path.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        tls = None
        if self.settings.cert_file is not None and self.settings.key_file is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=tls)
        await site.start()
        addresses = self._runner.addresses  # the bound port, when 0 asked for any free one
        self.bound_port = int(addresses[0][1]) if addresses else self.port
        self.status = f"listening on {self.host}:{self.bound_port}"
        log.info("web page: %s", self.status)
        self.listening.set()

    def _hide(self, token: str | None) -> None:
        """The token out of aiohttp's log records (None: the filter off again)."""
        for name in AIOHTTP_LOGGERS:
            logger = logging.getLogger(name)
            if self._filter is not None:
                logger.removeFilter(self._filter)
        self._filter = HideToken(token) if token is not None else None
        for name in AIOHTTP_LOGGERS:
            if self._filter is not None:
                logging.getLogger(name).addFilter(self._filter)

    async def _alive_loop(self) -> None:
        text = frame("alive", None)
        while True:
            await asyncio.sleep(self.alive_s)
            for page in list(self.pages):
                page.push("alive", text)

    async def close(self, timeout_s: float = 3.0) -> None:
        """Close every page, then stop listening; bounded."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._cleanup()

    async def _cleanup(self) -> None:
        writers = []
        for page in list(self.pages):
            page.finish()  # the answers to its last commands go out first
            if page.writer is not None:
                writers.append(page.writer)
        if writers:
            await asyncio.wait(writers, timeout=1.0)
        runner, self._runner = self._runner, None
        self.listening.clear()
        if runner is not None:
            await runner.cleanup()
        self._hide(None)

    # ------------------------------------------------------------------ requests

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The token in the path and the page's own Origin, or nothing at all."""
        token = self._token
        parts = request.path.split("/")
        given = parts[2] if len(parts) > 3 and parts[1] == "t" else None
        if token is None or given is None or not token_matches(given, token):
            return self._refuse(request, "no valid token")
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, request.host):
            return self._refuse(request, "a page of another site (Origin)")
        return await handler(request)

    def _refuse(self, request: web.Request, why: str) -> web.Response:
        self.refused += 1
        remote = request.remote or "?"
        first = remote not in self._warned
        if first and len(self._warned) < 1000:
            self._warned.add(remote)
        # The path is never logged: it may hold a token, even a nearly right one.
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "web page: refused a request from %s: %s",
            remote,
            why,
        )
        return web.Response(status=403, text=REFUSED)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        known = STATIC.get(name)
        if known is None:
            raise web.HTTPNotFound()
        data = resources.files("retrotread.web").joinpath("static", known[0]).read_bytes()
        return web.Response(body=data, content_type=known[1], charset="utf-8")

    async def _sessions(self, request: web.Request) -> web.StreamResponse:
        entries = await self.history.sessions()
        return web.Response(body=encode_json(entries), content_type="application/json")

    async def _plot(self, request: web.Request) -> web.StreamResponse:
        try:
            png = await self.history.plot(request.match_info["name"])
        except NoSuchSession:
            raise web.HTTPNotFound(text="no such session\n") from None
        return web.Response(body=png, content_type="image/png")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self.pages) >= self.settings.max_clients:
            return web.Response(
                status=503, text=f"{len(self.pages)} pages are open already; close one\n"
            )
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=64 * 1024, compress=False)
        await ws.prepare(request)
        page = _Page(ws, request.remote or "?")
        self.pages.add(page)
        writer = page.writer = asyncio.create_task(page.write(), name="web-page-writer")
        try:
            self._greet(page)
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    data = message.data.encode("utf-8")
                elif message.type == WSMsgType.BINARY:
                    data = bytes(message.data)  # as MQTT takes it: "not UTF-8" by name
                else:
                    continue
                await page.room.wait()  # a page that does not read its answers waits
                if page.closed:
                    break
                self.desk.submit(data, page.reply)
        finally:
            self.pages.discard(page)
            page.close()
            try:
                await asyncio.wait({writer}, timeout=2.0)
            finally:
                if not writer.done():
                    writer.cancel()
        return ws

    def _greet(self, page: _Page) -> None:
        """What MQTT keeps retained, so the page is whole at once."""
        page.push("availability", frame("availability", "online"))
        try:
            page.push("state", frame("state", self.site.state()))
            page.push("profiles", frame("profiles", self.site.profiles()))
            for kind, payload in self.site.walkers():
                topic = topic_of(kind, payload)
                if topic is not None:
                    page.push(topic, frame(topic, payload))
        except Exception as exc:  # the page still gets the live outputs
            failed("greeting a web page", exc, log)
        page.push("alive", frame("alive", {"ts": round(time.time(), 3)}))


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
