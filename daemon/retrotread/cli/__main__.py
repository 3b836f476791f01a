"""``python -m retrotread.cli``: the same as the ``retrotread`` command."""

from __future__ import annotations

import sys

from retrotread.cli import main

sys.exit(main())
