"""Sparse routes for structures of thousands of atoms at Γ: LDLᵀ factorization with inertia,
shift-invert Lanczos windows around E_F, and kernel-polynomial PDOS."""
