"""The double-entry ledger: accounts, balanced transactions, immutable entries, the check."""
