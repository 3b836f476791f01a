"""retrotread.service."""
