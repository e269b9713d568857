"""``make bench``: measured figures for the README, never test assertions."""
