"""The artifact store: content-keyed directories built once and published atomically, their file checks and
the per-key lock that lets parallel jobs share one store.

May import: ``mpo.infra``.
"""
