"""The DFT-functional route: GPAW's Kohn-Sham functional at the density of a given H, and forces
that are exactly -dE/dR (with the density-matrix response of a predicted H, and GPAW's H0
differentiated for a correction model); the model-started SCF route."""
