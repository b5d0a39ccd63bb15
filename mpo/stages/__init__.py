"""The stages methods are built from, each an artifact of the store: task data, the reference, samples,
preference pairs, single-objective policies, reward models, the RL stage, MPO's weight estimate; and the
evaluation every method shares.

May import: every floor below it (core, infra, store, config, data, scorers, models, training); never
``mpo.analysis``, ``mpo.studies``, the entry points or ``mpo.baselines``.
"""
