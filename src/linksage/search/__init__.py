"""ANN search with exact re-ranking over pages and pins (``ann``), their on-disk indices, and lookups."""
