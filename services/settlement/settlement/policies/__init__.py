"""Insurance policies as data: per insured region and year, versioned, loaded by ops."""
