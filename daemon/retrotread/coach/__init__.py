"""The coach: walkers, progression plans, and today's session for each walker (pure).

No asyncio, no MQTT, no bleak: the daemon, the CLI and the tests drive it with plain
values, session logs on disk and a time passed in.
"""
