"""ecards feature of the issuance service."""
