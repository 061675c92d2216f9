"""MLLP inbox and dead letters."""
