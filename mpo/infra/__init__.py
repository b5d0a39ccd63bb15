"""What every floor stands on: errors and their one-line messages, secret masking, the cost meter, the console,
cross-rank collectives, device choice, the one reader of Hydra's job state, and W&B (tracking and the offline reader).

May import: nothing of mpo outside ``mpo.infra``.
"""
