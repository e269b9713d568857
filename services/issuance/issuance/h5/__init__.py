"""h5 feature of the issuance service."""
