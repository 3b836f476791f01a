"""retrotread.mqtt."""
