"""Shared fixtures: small real GPAW reference records, computed once per test session.

Each fixture runs GPAW LCAO (PBE, szp(dzp), h = 0.2 Å) through mlh's own generator code.

The tests' JAX programs are tiny and compiled once each, so XLA's compile time dominates
their run time: the test session (and the processes it starts, through the environment)
compiles at XLA's backend optimisation level 0, which cuts the compile time of the
model's training programs by 40 % on 2 CPU cores (27 s to 15 s for one small run).
"""

from __future__ import annotations

import hashlib
import os

os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))

import numpy as np
import pytest

from tests.structures import STRUCTURES, rotate_structure


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory, worker_id):
    """One persistent XLA compilation cache for the test session, shared by the xdist
    workers and, through the environment, by the processes tests start (Dask workers,
    command lines): the same model programs, compiled by several tests, compile once."""
    import jax

    base = tmp_path_factory.getbasetemp()
    folder = (base if worker_id == "master" else base.parent) / "xla_cache"
    settings = {"jax_compilation_cache_dir": str(folder),
                "jax_persistent_cache_min_compile_time_secs": 0.5}
    previous = {name: getattr(jax.config, name) for name in settings}
    environment = {name.upper(): os.environ.get(name.upper()) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def gpaw_records(tmp_path_factory, worker_id):
    """Lazily computed {name: (atoms, record)} of real GPAW runs.

    Under pytest-xdist the workers share one computation per record: the first computes
    and writes it (under a file lock) to the session's common temporary folder, the others
    read it back (records round-trip exactly).
    """
    from filelock import FileLock

    from mlh.gpaw.reference import reference_record
    from mlh.record.io import read_record, write_record

    cache: dict[str, tuple] = {}
    log_dir = tmp_path_factory.mktemp("gpaw_logs")
    shared = None if worker_id == "master" else tmp_path_factory.getbasetemp().parent / "gpaw_records"

    def compute(atoms, settings, tag: str):
        if shared is None:
            return reference_record(atoms, settings, log=str(log_dir / f"{tag}.txt"))
        shared.mkdir(exist_ok=True)
        path = shared / f"{tag}.nc"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                write_record(reference_record(atoms, settings, log=str(log_dir / f"{tag}.txt")), path)
        return read_record(path)

    def get(name: str, rotation: np.ndarray | None = None):
        key = (name, None if rotation is None else rotation.tobytes())
        if key not in cache:
            build, settings = STRUCTURES[name]
            atoms = build()
            if rotation is not None:
                atoms = rotate_structure(atoms, rotation)
            tag = name if rotation is None else f"{name}-{hashlib.sha256(rotation.tobytes()).hexdigest()[:12]}"
            cache[key] = (atoms, compute(atoms, settings, tag))
        return cache[key]

    return get


@pytest.fixture(scope="module")
def float64():
    """JAX in float64 for the tests of one module (restored afterwards); physics code
    enables x64 only at entry points, never on import."""
    import jax

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
