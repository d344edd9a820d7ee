"""Electronic-structure analysis of Hamiltonian records: spectra, DOS/PDOS, band structures,
hole concentrations, two-terminal transport, and the `mlh-analyze` command line."""
