"""retrotread.session."""
