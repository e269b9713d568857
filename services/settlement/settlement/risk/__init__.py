"""Automated risk control: explainable rules on every quote and settlement, alerts for ops."""
