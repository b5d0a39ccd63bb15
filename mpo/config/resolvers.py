"""The config's own interpolation: ``${mpo.unique:}``, a suffix no other process shares, in the run and sweep
directories. ``${now:%H-%M-%S}`` alone names two runs started in the same second (a shell loop with ``&``, a
SLURM array, two nodes) the same directory, and one results.json would overwrite the other.

The suffix is 6 random hex digits drawn once per process and config (``use_cache``: every read of the run dir
in one job gives the same value, and Hydra copies the cache into each job of a sweep, so a sweep's jobs share
their sweep dir as intended). Registered when `mpo.config` is imported, before Hydra composes.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def unique_suffix() -> str:
    """Random, so unique across processes and nodes without coordination (1 in 16 million per same-second pair)."""
    return os.urandom(3).hex()


def register() -> None:
    if not OmegaConf.has_resolver("mpo.unique"):
        OmegaConf.register_new_resolver("mpo.unique", unique_suffix, use_cache=True)
