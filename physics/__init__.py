"""Physics from (H, S): occupations, density matrices, Mulliken charges, real-space densities,
and the two energy/force routes (`band/` and `dft/`)."""
