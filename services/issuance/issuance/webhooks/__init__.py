"""webhooks feature of the issuance service."""
