"""Lake tables: their contracts, Delta I/O and maintenance."""
