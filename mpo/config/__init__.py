"""Configuration: the typed schemas behind every config group, the checks composition cannot make, the
config folders, TRL's field lists and the training budget.

May import: ``mpo.core`` (the simplex check), ``mpo.infra``, ``mpo.data`` (checks of local data files).
"""

from mpo.config.resolvers import register as _register_resolvers

_register_resolvers()  # ${mpo.unique:} in the run and sweep dirs, resolvable wherever a config composes
