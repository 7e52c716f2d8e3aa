import filecmp

import pytest

from hf_eco2ai import CarbonConfig, ConfigError
from hf_eco2ai import carbon


def test_defaults_are_valid_and_country_is_normalised():
    c = CarbonConfig(project_name="bert-ft", model_name="bert-base", country="fr", carbon_budget_kg=5.0)
    assert c.country == "FR"
    assert c.intensity_g_per_kwh() == pytest.approx(41.44)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"project_name": ""}, "project_name"),
        ({"country": "France"}, "ISO 3166"),
        ({"country": "QQ"}, "no grid intensity"),
        ({"region": "mars:olympus-1"}, "unknown cloud region"),
        ({"pue": 0.9}, "pue must be 1.0..10"),
        ({"pue": 11}, "pue must be 1.0..10"),
        ({"country": "FR", "region": "gcp:europe-west1"}, "not both"),
        ({"measurement_interval": 0}, "measurement_interval"),
        ({"measurement_interval": 0.001}, "10 ms at most"),
        ({"carbon_budget_kg": -1, "country": "FR"}, "carbon_budget_kg"),
        ({"carbon_budget_kg": 1.0}, "needs country or region"),
        ({"prometheus_port": 70000}, "prometheus_port"),
        ({"price_per_kwh": "cheap"}, "price_per_kwh"),
    ],
)
def test_bad_values_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CarbonConfig(**kwargs)


def test_regions_and_footprint():
    c = CarbonConfig(region="gcp:europe-west1")
    assert c.intensity_g_per_kwh() is not None
    fp = carbon.footprint(3.6e6, 400.0, pue=1.5, price_per_kwh=0.2, gpu_hours=2, gpu_hour_usd=2.5)
    assert fp == {"energy_kwh": 1.5, "co2_kg": pytest.approx(0.6), "energy_usd": pytest.approx(0.3), "compute_usd": 5.0}


def test_bundled_tables_equal_the_datasets(repo):
    for name in ("grid_intensity_by_country.csv", "cloud_region_intensity.csv"):
        assert filecmp.cmp(repo / "datasets" / name, repo / "python" / "hf_eco2ai" / "data" / name, shallow=False)


def test_run_ids_from_any_project_name_are_safe():
    from hf_eco2ai.probe import safe_run_id
    import re
    for project in ["bert ft", "../../etc", ".hidden", "a/b/c", "é" * 200, ""]:
        rid = safe_run_id(project, "20261203-120000", 42)
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", rid), rid
        assert len(rid.encode()) <= 128 and rid.endswith("-20261203-120000-42"), rid
    assert safe_run_id("bert-ft", "s", 1) == "bert-ft-s-1"
