"""Electronic-structure analysis of Hamiltonian records: spectra, DOS/PDOS, band structures,
hole concentrations, and the `mlh-analyze` command line."""
