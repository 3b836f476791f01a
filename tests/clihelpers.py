"""The ``retrotread`` command line as a person runs it: a subprocess, its output as text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RETROTREAD = ROOT / ".venv" / "bin" / "retrotread"  # the console script, when installed


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``retrotread ARGS`` from the repository, seeing none of this machine's RETROTREAD_*
    variables (a developer's $RETROTREAD_CONFIG must not leak in), only those of ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    full_env.update(env or {})
    exe = [str(RETROTREAD)] if RETROTREAD.exists() else [sys.executable, "-m", "retrotread.cli"]
    return subprocess.run(
        [*exe, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    """The refusal's one line on stderr: exit status 2, no traceback (SPEC.md §6)."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]
