"""Print the pip requirements of the given HA integrations and of everything they depend on.

Run with the HA venv's python inside the chroot:  python integration_reqs.py mqtt frontend ...
HA installs these itself at startup only when it can reach PyPI; we pre-install them.
"""

import json
import pathlib
import sys

import homeassistant.components as comps

ROOT = pathlib.Path(comps.__path__[0])
seen, reqs, todo = set(), set(), list(sys.argv[1:])
while todo:
    d = todo.pop()
    if d in seen:
        continue
    seen.add(d)
    mf = ROOT / d / "manifest.json"
    if not mf.exists():
        continue
    m = json.loads(mf.read_text())
    reqs.update(m.get("requirements", []))
    todo.extend(m.get("dependencies", []))
    todo.extend(m.get("after_dependencies", []))
print("\n".join(sorted(reqs)))
