"""Policies: HF causal LMs behind one text interface, LoRA adapters, the log-linear mixture (token- and
sequence-level decoding) and sampling.

May import: ``mpo.core``, ``mpo.infra``.
"""
