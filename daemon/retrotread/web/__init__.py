"""The phone page: a small page and a WebSocket served by the daemon (aiohttp lives here).

``access`` keeps the token, ``history`` reads the sessions for the page, ``server`` serves
the page, its files (``static/``, plain HTML, CSS and JavaScript) and the WebSocket that
speaks the MQTT contract through the daemon's command desk.
"""
