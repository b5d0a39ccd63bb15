"""Objectives' scorers, each a callable ``score(prompts, responses) -> list[float]`` named by ``_target_``
in a task config (those names are public: keep them), and `mpo.scorers.checked`, the wrapper that stops a run on
a bad score.

May import: ``mpo.infra``.
"""
