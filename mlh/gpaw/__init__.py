"""The GPAW boundary: reference calculations, their settings, exact two-centre overlaps,
batch generation and training-structure recipes. Hartree/Bohr are converted to eV/Å here only."""
