"""``retrotread web url``: the phone page's address with its token, as text and QR codes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from retrotread.cli._shared import Actions, load_config
from retrotread.errors import ConfigError, RetrotreadError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser, "web_command", "config file ([web] and the state directory)")
    url = actions.add(
        "url", "print the page's address with its token, a QR code, and the QR code as PNG"
    )
    url.add_argument("--host", help="the name or address a phone reaches this machine by")
    url.add_argument(
        "--png", type=Path, help="where the QR code goes (default: beside the token file)"
    )
    url.add_argument("--no-qr", action="store_true", help="the address only")


def run(args: argparse.Namespace) -> int:
    from retrotread.web.access import (
        load_or_create_token,
        page_url,
        qr_png,
        qr_terminal,
        reachable_host,
    )

    config = load_config(args.config)
    web = config.web
    if web.address is None:
        raise ConfigError(
            'the web page is off: set [web] listen (e.g. listen = "0.0.0.0:8080") in the '
            "config, restart the daemon, then run this again"
        )
    listen_host, port = web.address
    token = load_or_create_token(config.web_token_file)
    host = args.host or reachable_host(listen_host)
    tls = web.cert_file is not None
    url = page_url(host, port, token, tls=tls, base=None if args.host else web.url)
    print(url)
    if args.no_qr:
        return 0
    print(qr_terminal(url), end="")
    png = args.png or config.web_token_file.with_name("web-qr.png")
    try:
        fd = os.open(png, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the key
        os.close(fd)
        qr_png(url, png)
    except OSError as exc:
        raise RetrotreadError(f"cannot write {png}: {exc.strerror}") from None
    print(f"QR code: {png}")
    print("Open the address on the phone once; bookmark it or add it to the home screen.")
    print("Anyone with this address can drive the treadmill: keep it within the household.")
    return 0
