"""holders feature."""
