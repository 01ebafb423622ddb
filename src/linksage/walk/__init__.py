"""Pixie random walks with restart along metapaths: each page's top-K neighbour pages by visits.

Modules (this package imports nothing heavy on its own):

- ``metapaths``  parse and validate ``page-pin-board-pin-page`` strings; hop plans for the kernel
- ``kernels``    the numba kernels: counter-based RNG, lock-step walkers, visit hash table, top-K
- ``pixie``      the walk graph (memory-mapped CSRs), step budgets, ``walk_pages`` for any page subset
- ``stage``      the pipeline stage ``walk``
"""
