"""events feature of the issuance service."""
