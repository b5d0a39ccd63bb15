"""Pure maths, torch only: MPO's outer objective F(λ) and its exact solver, the paper's BSMD, the proposal
estimators, statistics, reward normalisation, the one simplex check and the enumerable test problems.

May import: nothing of mpo outside ``mpo.core``.
"""
