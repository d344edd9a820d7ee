"""The device-scale doping study: design variables, resumable Dask batches, predicted
Hamiltonians -> hole concentrations, and the Bayesian linear model (PyMC)."""
