"""Relaxations and defect formation energies with machine-learned Hamiltonians.

Modules: `relax.calculator` (the ASE calculator MLHCalculator), `relax.optimize`
(fixed-cell BFGS/FIRE relaxation and its Dataset), `relax.formation` (formation energies,
seed 003 eq. 1), `relax.drivers` (resumable relax-and-write and the options of the example
drivers). Nothing is imported here, so `import relax` stays cheap.
"""
