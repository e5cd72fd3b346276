"""Shared fixtures. Tests that need the shared datasets skip, with the reason, when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from radvlsm.data.paths import ENV_VAR, shared_datasets_root


def _dataset(name: str) -> Path:
    root = shared_datasets_root() / name
    if not root.is_dir():
        pytest.skip(f"shared dataset {name!r} not found at {root} (set {ENV_VAR} to its parent folder)")
    return root


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    root = shared_datasets_root()
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root} (set {ENV_VAR})")
    return root


@pytest.fixture(scope="session")
def ph2_root() -> Path:
    return _dataset("ph2")


@pytest.fixture(scope="session")
def kvasir_root() -> Path:
    return _dataset("kvasir-seg")


@pytest.fixture(scope="session")
def busi_root() -> Path:
    return _dataset("busi")


@pytest.fixture(scope="session")
def ibsi_phantom_root() -> Path:
    return _dataset("ct-studies/ibsi-lung-phantom")


@pytest.fixture(scope="session")
def lidc_root() -> Path:
    return _dataset("lidc-nodules")
