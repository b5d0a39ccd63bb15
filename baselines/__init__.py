"""The rival methods, plug-ins on the framework: MORLHF, MaxMin-RLHF (with EM), Reward Soups, Mixed-PO and
their reward aggregation. This top-level folder ships and imports as ``mpo.baselines`` (pyproject.toml maps
it; a top-level import name ``baselines`` would clash with an old PyPI package of that name). Each module has
``build(ctx, method_cfg) -> MethodOutput``, named by ``_target_`` in ``conf/method``.

May import: any floor of mpo; nothing in mpo imports it.
"""
