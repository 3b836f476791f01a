"""The command desk on its own: several transports, one queue, one result per command each,
given back to the transport that sent it."""

from __future__ import annotations

import asyncio
from typing import Any

from retrotread.events import COMMAND_REFUSED
from retrotread.mqtt.commands import Command
from retrotread.mqtt.desk import CommandDesk


class Handler:
    """Carries commands out in order; ``set`` waits for ``release``."""

    def __init__(self) -> None:
        self.done: list[tuple[str, Any]] = []
        self.release = asyncio.Event()

    async def handle(self, command: Command) -> None:
        if command.action == "set":
            await self.release.wait()
        if command.action == "finish":
            raise ValueError("a bug of the daemon's")
        self.done.append((command.action, command.id))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_each_transport_gets_its_own_results_from_one_queue() -> None:
    handler = Handler()
    desk = CommandDesk(handler)
    events: list[tuple[str, dict[str, Any]]] = []
    desk.add_listener(lambda kind, payload: events.append((kind, payload)))
    mqtt: list[dict[str, Any]] = []
    web: list[dict[str, Any]] = []
    desk.submit(b'{"action": "set", "speed_kmh": 2, "id": "m1"}', mqtt.append)
    desk.submit(b'{"action": "pause", "id": "w1"}', web.append)
    desk.submit(b'{"action": "dance", "id": "w2"}', web.append)
    desk.submit(b'{"action": "stop", "id": "w3"}', web.append)
    await settle()
    # The stop overtook the set the worker is busy with and the pause waiting behind it.
    assert handler.done == [("stop", "w3")]
    assert [r["id"] for r in web] == ["w2", "w3"]
    assert web[0]["ok"] is False and "unknown action 'dance'" in web[0]["error"]
    handler.release.set()
    await settle()
    assert handler.done == [("stop", "w3"), ("set", "m1"), ("pause", "w1")]
    assert mqtt == [{"id": "m1", "action": "set", "ok": True, "error": None}]
    assert web[2] == {"id": "w1", "action": "pause", "ok": True, "error": None}
    # The refusal is told to every output, whoever sent the command.
    assert [(k, e["type"], e["id"]) for k, e in events] == [("event", COMMAND_REFUSED, "w2")]
    assert desk.received == desk.answered == 4
    await desk.close()


async def test_a_broken_reply_costs_nobody_else_their_answer() -> None:
    handler = Handler()
    desk = CommandDesk(handler)
    good: list[dict[str, Any]] = []

    def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("the socket went away")

    desk.submit(b'{"action": "pause", "id": 1}', broken)
    desk.submit(b'{"action": "finish", "id": 2}', good.append)
    desk.submit(b'{"action": "resume", "id": 3}', good.append)
    await settle()
    assert [a for a, _ in handler.done] == ["pause", "resume"]
    assert good[0]["id"] == 2 and good[0]["error"].startswith("internal error while finish")
    assert good[1] == {"id": 3, "action": "resume", "ok": True, "error": None}
    await desk.close()


async def test_close_answers_what_waits_and_refuses_what_comes() -> None:
    handler = Handler()
    desk = CommandDesk(handler, backlog=2)
    got: list[dict[str, Any]] = []
    for i in range(5):
        desk.submit(f'{{"action": "set", "speed_kmh": 1, "id": {i}}}'.encode(), got.append)
        await settle()
    busy = [r["id"] for r in got if r["error"] and "slow down (2 are" in r["error"]]
    assert busy == [3, 4]  # 0 is being carried out, 1 and 2 wait
    await desk.close()
    desk.submit(b'{"action": "stop", "id": "late"}', got.append)
    told = {r["id"]: r["error"] for r in got if r["id"] not in busy}
    assert told == {i: "the daemon is shutting down" for i in (0, 1, 2, "late")}
    assert len(got) == 6
    assert handler.done == []
