"""The e-SSC identity service."""
