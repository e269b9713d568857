"""clients feature."""
