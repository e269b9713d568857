"""The e-SSC settlement service."""
