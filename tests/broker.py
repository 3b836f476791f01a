"""A real Mosquitto broker for tests, on a free loopback port, optionally with auth or TLS."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from retrotread.servers import ServerProcess, free_port, mosquitto

__all__ = ["Broker", "free_port", "make_tls_files"]


@dataclass
class Broker:
    """A real Mosquitto for one test, optionally with a password or TLS (server side)."""

    port: int
    workdir: Path
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    tls: bool = False
    server: ServerProcess | None = None

    def start(self) -> None:
        extra: list[str] = []
        if self.username:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("")
            subprocess.run(
                ["mosquitto_passwd", "-b", str(pwfile), self.username, self.password or ""],
                check=True,
                capture_output=True,
            )
            os.chmod(pwfile, 0o600)
            extra += ["allow_anonymous false", f"password_file {pwfile}"]
        if self.tls:
            extra += [
                f"cafile {self.workdir / 'ca.crt'}",
                f"certfile {self.workdir / 'server.crt'}",
                f"keyfile {self.workdir / 'server.key'}",
            ]
        self.server = mosquitto(self.workdir, self.port, extra)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def make_tls_files(workdir: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=workdir)

    def certificate(name: str, subject: str, *ext: str) -> None:
        request = f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj"
        openssl(*request.split(), subject)
        sign = f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
        openssl(*sign.split(), "-out", f"{name}.crt", *ext)

    ca = "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.crt -subj"
    openssl(*ca.split(), "/CN=retrotread test CA")
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    certificate("server", "/CN=localhost", "-extfile", "san.ext")
    certificate("client", "/CN=retrotread client")
    return workdir / "ca.crt"
