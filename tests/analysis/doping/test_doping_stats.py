"""The Bayesian linear model of hole concentrations (analysis.doping.statistics)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from analysis.doping.statistics import (
    LinearModelConfig,
    Prior,
    Term,
    convergence_problems,
    fit_linear_model,
    posterior_summary,
)
from mlh.errors import MLHError

TRUTH = {"c_dopant": 9.7, "c_density": 4.1, "c_vacancy": -5.0, "sigma": 1.5}


def synthetic_table(n: int = 60, seed: int = 5) -> xr.Dataset:
    """Holes (cm^-2) from the seed's model with known coefficients and noise."""
    rng = np.random.default_rng(seed)
    dopant = rng.uniform(3e-3, 17e-3, n)
    density = rng.uniform(6.6, 8.4, n)
    vacancy = rng.uniform(0.0, 1.0, n)
    holes = (TRUTH["c_dopant"] * dopant / 1e-3 + TRUTH["c_density"] * (density - density.mean())
             + TRUTH["c_vacancy"] * vacancy + rng.normal(0, TRUTH["sigma"], n))
    data = {"holes_per_area": holes * 1e12, "dopant_ratio": dopant, "mass_density": density,
            "vacancy_rate": vacancy}
    return xr.Dataset({k: ("structure", v) for k, v in data.items()})


@pytest.fixture(scope="module")
def posterior():
    table = synthetic_table()
    table["holes_per_area"][3] = np.nan  # a failed structure is left out
    config = LinearModelConfig(draws=1000, tune=1000, chains=2, seed=3)
    return posterior_summary(fit_linear_model(table, config, cores=1))


def test_posterior_recovers_known_coefficients(posterior):
    for name, value in TRUTH.items():
        row = posterior.sel(parameter=name)
        assert float(row["hdi_lower"]) < value < float(row["hdi_upper"]), (name, row)
    assert posterior.attrs["chains"] == 2 and posterior.attrs["draws"] == 1000
    assert convergence_problems(posterior) == []


def test_poor_convergence_is_reported(posterior):
    bad = posterior.copy(deep=True)
    bad["r_hat"][0] = 1.2
    bad["ess_bulk"][1] = 50
    problems = convergence_problems(bad)
    assert len(problems) == 2 and "R-hat" in problems[0] and "effective sample size" in problems[1]


def test_too_few_rows_and_missing_columns_raise():
    table = synthetic_table(n=4)
    with pytest.raises(MLHError, match="at least 5 structures"):
        fit_linear_model(table)
    with pytest.raises(MLHError, match="no column"):
        fit_linear_model(table.drop_vars("vacancy_rate"))


def test_config_rejects_repeated_names():
    term = Term(name="sigma", variable="x", prior=Prior(mu=0, sigma=1))
    with pytest.raises(ValueError, match="distinct"):
        LinearModelConfig(terms=[term])
