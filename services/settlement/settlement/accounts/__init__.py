"""Holders' personal accounts: opening, top-ups, self-service enquiry, the e-card page summary."""
