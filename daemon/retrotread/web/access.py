"""Who may use the phone page: one random token, kept in a file in the daemon's state dir.

The token is the page's only key: it is part of every address the page uses
(``/t/<token>/...``), so a link or a home-screen icon keeps it, and no cookie is ever
set. It is made on first use (by the daemon or by ``retrotread web url``), readable by
its owner only, and compared in constant time. It never goes into a log line.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import secrets
import socket
from pathlib import Path

from retrotread.errors import ConfigError

TOKEN_BYTES = 24  # 192 bits: 32 characters of URL-safe base64
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,128}$")
PREFIX = "/t/"


def load_or_create_token(path: Path) -> str:
    """The token in ``path``; made (0600, owned like its directory) when there is none.

    A file that holds no usable token is an error that says what to do, not a new token:
    a phone that has the old one would be locked out without a word.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ConfigError(f"web token file {path}: cannot read: {why}") from None
    if not _TOKEN.match(text):
        raise ConfigError(
            f"web token file {path} holds no usable token (22-128 characters of A-Z a-z 0-9 "
            "_ -); delete it and a new one is made (phones then need the new address)"
        )
    return text


def _create(path: Path) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made a moment ago by the daemon or another command
        return load_or_create_token(path)
    except OSError as exc:
        raise ConfigError(f"web token file {path}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    _owned_like_parent(path)
    return token


def _owned_like_parent(path: Path) -> None:
    """Made by root for a daemon that runs as its own user: give it to that user."""
    if os.geteuid() != 0:
        return
    st = path.parent.stat()
    if st.st_uid != 0:
        os.chown(path, st.st_uid, st.st_gid)


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison (a wrong token takes as long whatever it shares)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def page_url(
    host: str, port: int, token: str, *, tls: bool = False, base: str | None = None
) -> str:
    """The page's address with its token: ``base`` (``[web] url``) or host and port."""
    if base is not None:
        return f"{base.rstrip('/')}{PREFIX}{token}/"
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    default = 443 if tls else 80
    return f"{scheme}://{shown}{'' if port == default else f':{port}'}{PREFIX}{token}/"


def reachable_host(listen_host: str) -> str:
    """The host a phone on the LAN would use for a daemon listening on ``listen_host``.

    A specific address or name is itself; for every address (0.0.0.0, ::) it is this
    machine's address on the network its default route leads to (a UDP socket's connect
    only asks the routing table, it sends nothing), else its host name.
    """
    try:
        if not ipaddress.ip_address(listen_host).is_unspecified:
            return listen_host
    except ValueError:
        return listen_host  # a name
    family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"  # documentation nets
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            address = str(s.getsockname()[0])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    except OSError:
        pass
    return socket.gethostname()


def qr_terminal(url: str) -> str:
    """The address as a QR code drawn with block characters, for a terminal."""
    import io

    import segno

    out = io.StringIO()
    segno.make(url, error="m", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def qr_png(url: str, path: Path) -> None:
    """The address as a QR code in a PNG, big enough to scan from a screen or paper."""
    import segno

    segno.make(url, error="m", micro=False).save(str(path), kind="png", scale=8, border=4)
