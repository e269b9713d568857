"""Reconciliation (3201 totals, 3202 detail): a hospital's day, derived from the ledger."""
