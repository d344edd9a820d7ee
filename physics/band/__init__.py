"""The band-energy route: the model H(R) and the overlap S(R) as differentiable JAX functions of
the positions, a fitted short-range repulsion, and autodiff energies and forces."""
