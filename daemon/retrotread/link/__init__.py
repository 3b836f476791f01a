"""retrotread.link."""
