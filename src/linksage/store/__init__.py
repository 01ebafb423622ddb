"""The versioned page-embedding store (Lance): upserts as atomic versions, history, restore."""

from linksage.store.lance_store import (
    COLUMNS,
    EmbeddingStore,
    UpsertResult,
    VersionInfo,
    embedding_matrix,
    make_batch,
    page_schema,
)

__all__ = ["COLUMNS", "EmbeddingStore", "UpsertResult", "VersionInfo", "embedding_matrix", "make_batch", "page_schema"]
