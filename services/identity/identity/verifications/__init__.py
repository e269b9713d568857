"""verifications feature."""
