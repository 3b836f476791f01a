"""retrotread.profiles."""
