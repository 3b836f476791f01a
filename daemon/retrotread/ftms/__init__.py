"""retrotread.ftms."""
