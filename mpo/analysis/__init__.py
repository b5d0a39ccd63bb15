"""Reading results: loading results.json files (and W&B runs), the comparison table, paired statistics,
the report and the plots.

May import: ``mpo.core``, ``mpo.infra``, ``mpo.config``; never the store, models, training or stages.
"""
