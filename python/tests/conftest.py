import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def probe_binary():
    """The probe built by `cargo build` (cargo xtask test builds it first)."""
    probe = os.environ.get("ECO2AI_PROBE") or str(REPO / "target" / "debug" / "eco2ai-probe")
    if not os.access(probe, os.X_OK):
        pytest.fail(f"eco2ai-probe not built at {probe}: run cargo build (or cargo xtask test)")
    os.environ["ECO2AI_PROBE"] = probe
    # Tests start their own probes; never join an outer one.
    os.environ.pop("ECO2AI_RUN_DIR", None)
    return probe


@pytest.fixture
def repo():
    return REPO
