"""loader feature."""
