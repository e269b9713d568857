"""Settlement (2207) and refund (2208): money moves here, on the ledger, exactly once."""
