"""Grid carbon intensity (bundled tables) and the arithmetic of kWh, CO2 and cost."""

import csv
import functools
import os

_DATA = os.path.join(os.path.dirname(__file__), "data")
J_PER_KWH = 3.6e6


@functools.lru_cache(maxsize=None)
def _countries():
    with open(os.path.join(_DATA, "grid_intensity_by_country.csv"), newline="") as f:
        return {row["iso2"].upper(): float(row["gco2eq_per_kwh"]) for row in csv.DictReader(f)}


@functools.lru_cache(maxsize=None)
def _regions():
    with open(os.path.join(_DATA, "cloud_region_intensity.csv"), newline="") as f:
        return {f"{r['provider']}:{r['region']}".lower(): float(r["gco2eq_per_kwh"]) for r in csv.DictReader(f)}


def country_intensity(iso2):
    return _countries().get(str(iso2).upper())


def region_intensity(region):
    return _regions().get(str(region).lower())


def footprint(energy_j, intensity_g_per_kwh, pue=1.0, price_per_kwh=None, gpu_hours=0.0, gpu_hour_usd=None):
    """kWh (with PUE), kg CO2 and costs of an amount of energy."""
    kwh = energy_j / J_PER_KWH * pue + 0.0  # + 0.0: -0.0 (no reading yet) prints as "-0"
    out = {"energy_kwh": kwh, "co2_kg": None, "energy_usd": None, "compute_usd": None}
    if intensity_g_per_kwh is not None:
        out["co2_kg"] = kwh * intensity_g_per_kwh / 1000.0
    if price_per_kwh is not None:
        out["energy_usd"] = kwh * price_per_kwh
    if gpu_hour_usd is not None:
        out["compute_usd"] = gpu_hours * gpu_hour_usd
    return out
