"""linksage: graph-aware, Matryoshka embeddings of landing pages in the space of their pins."""

__version__ = "0.1.0"
