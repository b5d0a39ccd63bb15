"""Studies and benchmarks: ``python -m mpo.studies.bench`` (its dispatcher), the LoRA bench, the cost-scaling
study, the estimator study and the soak, with one shared timing harness.

May import: any floor of mpo; nothing in mpo imports them.
"""
