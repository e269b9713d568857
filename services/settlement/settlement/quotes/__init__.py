"""Pre-settlement (national code 2206): the split of a bill, committing no money."""
