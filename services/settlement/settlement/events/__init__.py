"""Consuming identity's event feed: holders opened exactly once."""
