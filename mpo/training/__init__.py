"""Thin wrappers of TRL's trainers (SFT, DPO, reward models, GRPO/RLOO): a model directory in, a trained one
out, with the budget, checkpoints and resume handled once.

May import: every floor below stages (core, infra, store, config, data, scorers, models).
"""
