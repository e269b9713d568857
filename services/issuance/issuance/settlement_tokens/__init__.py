"""settlement tokens feature of the issuance service."""
