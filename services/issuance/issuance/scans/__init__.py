"""scans feature of the issuance service."""
