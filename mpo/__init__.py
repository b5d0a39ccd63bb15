"""mpo: Hydra-configured experiments for multi-objective preference alignment (MPO against TRL baselines).

The package is laid out by floors (docs/design.md, "Layout"): ``core`` (pure maths), ``infra``, ``store``,
``config``, ``data``, ``scorers``, ``models``, ``training``, ``stages``, ``analysis``, ``studies``; the modules at
this level are the thin entry points (run, cli, callbacks, compare, experiment, methods). tests/test_floors.py
keeps the rules.
"""
