"""The simulated FTMS treadmill and its faces (in-process link, fake BlueZ)."""
