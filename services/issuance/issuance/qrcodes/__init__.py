"""qrcodes feature of the issuance service."""
