"""cards feature."""
