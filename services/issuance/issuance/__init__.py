"""The e-SSC issuance service."""
