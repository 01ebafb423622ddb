"""Ingest: adapters (tables, reddit, synthetic) that produce the input contract, and its canonical tables."""
