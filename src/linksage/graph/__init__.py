"""The heterogeneous graph: node and edge types, CSR storage, cohesion filter, near-duplicate clusters, pruning.

Modules (this package imports nothing heavy on its own):

- ``schema``           node types, edge types and CSR file names (pure Python)
- ``csr``              build, save and memory-map one CSR per edge type and direction
- ``cohesion``         the pin-page cohesion filter
- ``near_duplicates``  near-duplicate pin clusters through a faiss index
- ``prune``            hub caps and the minimum-degree drop
- ``build``            the whole graph from canonical tables and content vectors
- ``stage``            the pipeline stage ``graph``
"""
