"""Task data: the embedded synthetic reviews, local files and hub datasets read as their cards describe, and
the task builders named by ``_target_`` in ``conf/task``.

May import: ``mpo.infra``.
"""
