"""retrotread: programmed backward walking on a Bluetooth FTMS treadmill."""

from __future__ import annotations

__version__ = "0.1.0"
