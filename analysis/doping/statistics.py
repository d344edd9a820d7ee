"""Bayesian linear model of the hole concentration on design variables (seed 001, section 4.4).

    rho_h = sum_k c_k (x_k - center_k) / scale_k [+ c_0] + noise,  noise ~ Normal(0, sigma)

with Normal priors on the coefficients and a HalfCauchy prior on sigma, sampled with
PyMC's NUTS. The defaults are the seed's: the hole concentration in 10^12 cm^-2; the
dopant ratio in units of 10^-3 with prior Normal(15, 10); the mass density in g/cm^3,
centred on its mean, with prior Normal(5, 10); the vacancy rate in % with prior
Normal(-7, 10); sigma ~ HalfCauchy(10); 8 chains x 4,000 draws after 2,000 tuning steps.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from mlh.errors import MLHError

__all__ = [
    "Prior", "Term", "LinearModelConfig", "fit_linear_model", "posterior_summary",
    "convergence_problems", "plot_posterior_pairs", "write_inference_data",
]

R_HAT_LIMIT = 1.01
ESS_LIMIT = 400


class Prior(BaseModel):
    """Normal(mu, sigma) prior of a coefficient (units of the response per unit variable)."""

    model_config = ConfigDict(extra="forbid")
    mu: float
    sigma: PositiveFloat


class Term(BaseModel):
    """One design variable of the linear model."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="coefficient name")
    variable: str = Field(description="column of the results table")
    scale: PositiveFloat = Field(1.0, description="the variable is used in units of `scale`")
    center: bool = Field(False, description="subtract the variable's mean first")
    prior: Prior


def _seed_terms() -> list[Term]:
    return [
        Term(name="c_dopant", variable="dopant_ratio", scale=1e-3, prior=Prior(mu=15, sigma=10)),
        Term(name="c_density", variable="mass_density", center=True, prior=Prior(mu=5, sigma=10)),
        Term(name="c_vacancy", variable="vacancy_rate", prior=Prior(mu=-7, sigma=10)),
    ]


class LinearModelConfig(BaseModel):
    """The linear model, its priors and the sampler settings (defaults: seed 001, 4.4)."""

    model_config = ConfigDict(extra="forbid")
    response: str = "holes_per_area"
    response_scale: PositiveFloat = Field(1e12, description="response in units of this")
    terms: list[Term] = Field(default_factory=_seed_terms)
    intercept: Prior | None = Field(None, description="None: no intercept, as in the seed")
    residual_beta: PositiveFloat = Field(10.0, description="HalfCauchy beta of sigma")
    draws: PositiveInt = 4000
    tune: PositiveInt = 2000
    chains: PositiveInt = 8
    seed: int = 0
    hdi_prob: float = Field(0.94, gt=0, lt=1, description="0.94: the 3 % and 97 % HDI bounds")

    @model_validator(mode="after")
    def _distinct_names(self) -> LinearModelConfig:
        names = [t.name for t in self.terms] + ["sigma", "intercept"]
        if len(set(names)) != len(names):
            raise ValueError(f"coefficient names must be distinct and not sigma/intercept: {names}")
        if not self.terms:
            raise ValueError("the model needs at least one term")
        return self


def _design(table: xr.Dataset, config: LinearModelConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(x (rows, terms) in model units, y in model units, centres) of the usable rows."""
    missing = [v for v in [config.response] + [t.variable for t in config.terms]
               if v not in table]
    if missing:
        raise MLHError(f"the results table has no column(s) {missing}; it has "
                       f"{sorted(table.data_vars)}")
    y = np.asarray(table[config.response].values, dtype=float) / config.response_scale
    x = np.stack([np.asarray(table[t.variable].values, dtype=float) / t.scale
                  for t in config.terms], axis=1)
    usable = np.isfinite(y) & np.isfinite(x).all(axis=1)
    x, y = x[usable], y[usable]
    if len(y) < len(config.terms) + 2:
        raise MLHError(f"the linear model of {len(config.terms)} terms needs at least "
                       f"{len(config.terms) + 2} structures with results, got {len(y)}")
    centres = {t.name: float(x[:, k].mean()) if t.center else 0.0
               for k, t in enumerate(config.terms)}
    x = x - np.array([centres[t.name] for t in config.terms])
    return x, y, centres


def fit_linear_model(table: xr.Dataset, config: LinearModelConfig = LinearModelConfig(),
                     cores: int | None = None, progressbar: bool = False):
    """Sample the posterior of the linear model for the rows of `table` with finite values.

    Args:
        table: one row per structure (dimension of any name), with the response and the
            terms' variables as data variables; rows with NaN (failed structures) are left out.
        config: model, priors and sampler settings.
        cores: parallel chains (default: min(chains, CPUs)).

    Returns:
        arviz InferenceData (posterior, sample_stats, observed_data, constant_data with the
        design matrix), attributes recording units, scales and centres.

    Raises:
        MLHError: missing columns or too few usable rows.
    """
    import pymc as pm

    x, y, centres = _design(table, config)
    with pm.Model() as model:
        mean = 0.0
        for k, term in enumerate(config.terms):
            coefficient = pm.Normal(term.name, mu=term.prior.mu, sigma=term.prior.sigma)
            mean = mean + coefficient * x[:, k]
        if config.intercept is not None:
            mean = mean + pm.Normal("intercept", mu=config.intercept.mu, sigma=config.intercept.sigma)
        sigma = pm.HalfCauchy("sigma", beta=config.residual_beta)
        pm.Normal("response", mu=mean, sigma=sigma, observed=y)
        cores = cores or min(config.chains, os.cpu_count() or 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            idata = pm.sample(draws=config.draws, tune=config.tune, chains=config.chains,
                              cores=cores, random_seed=config.seed, progressbar=progressbar,
                              model=model, compute_convergence_checks=False,
                              mp_ctx="spawn")  # no fork of a process that may hold JAX threads
    idata.add_groups(constant_data=xr.Dataset(
        {"design": (("row", "term"), x)}, coords={"term": [t.name for t in config.terms]}))
    idata.posterior.attrs.update({
        "response": config.response,
        "response_scale": config.response_scale,
        "model": "response/response_scale = sum_k c_k (x_k/scale_k - centre_k) + noise",
        **{f"{t.name}_variable": t.variable for t in config.terms},
        **{f"{t.name}_scale": t.scale for t in config.terms},
        **{f"{t.name}_centre": centres[t.name] for t in config.terms},
    })
    return idata


def posterior_summary(idata, hdi_prob: float = 0.94) -> xr.Dataset:
    """Mean, sd, HDI bounds, R-hat and bulk/tail ESS per parameter, as a Dataset."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        frame = az.summary(idata, hdi_prob=hdi_prob)
    low, high = (f"hdi_{100 * p:g}%" for p in ((1 - hdi_prob) / 2, (1 + hdi_prob) / 2))
    columns = {"mean": "mean", "sd": "sd", low: "hdi_lower", high: "hdi_upper",
               "r_hat": "r_hat", "ess_bulk": "ess_bulk", "ess_tail": "ess_tail"}
    summary = xr.Dataset(
        {new: ("parameter", frame[old].to_numpy(dtype=float)) for old, new in columns.items()},
        coords={"parameter": list(frame.index)},
    )
    divergent = idata.sample_stats["diverging"].values
    summary.attrs.update({"hdi_prob": hdi_prob, "divergences": int(divergent.sum()),
                          "chains": int(divergent.shape[0]), "draws": int(divergent.shape[1])})
    return summary


def convergence_problems(summary: xr.Dataset) -> list[str]:
    """Plain-language warnings for R-hat > 1.01, bulk/tail ESS < 400 or divergences."""
    problems = []
    for name in summary["parameter"].values:
        row = summary.sel(parameter=name)
        if not float(row["r_hat"]) <= R_HAT_LIMIT:
            problems.append(f"{name}: R-hat {float(row['r_hat']):.3f} > {R_HAT_LIMIT} "
                            "(chains disagree; sample longer)")
        ess = min(float(row["ess_bulk"]), float(row["ess_tail"]))
        if not ess >= ESS_LIMIT:
            problems.append(f"{name}: effective sample size {ess:.0f} < {ESS_LIMIT}")
    if summary.attrs.get("divergences", 0):
        problems.append(f"{summary.attrs['divergences']} divergent transitions (the posterior "
                        "is hard to sample; results may be biased)")
    return problems


def plot_posterior_pairs(idata, path: str | os.PathLike, max_samples: int = 4000) -> Path:
    """Pair plot of the coefficients and sigma (marginals on the diagonal, as seed fig. 2b)."""
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlh.file_output import atomic_output

    posterior = idata.posterior
    step = max(1, posterior.sizes["chain"] * posterior.sizes["draw"] // max_samples)
    thinned = posterior.isel(draw=slice(None, None, step))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_pair(thinned, kind="kde", marginals=True, figsize=(9, 9),
                            kde_kwargs={"fill_last": False})
    figure = np.ravel(axes)[0].get_figure()
    path = Path(path)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def write_inference_data(idata, path: str | os.PathLike) -> Path:
    """Write the InferenceData to NetCDF atomically."""
    from mlh.file_output import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        idata.to_netcdf(str(tmp))
    return path
