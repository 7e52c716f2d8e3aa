"""CarbonConfig: what a run is called, where it runs, and what it may cost."""

from dataclasses import dataclass, field
from typing import Optional

from . import carbon


class ConfigError(ValueError):
    """A CarbonConfig field has a value that cannot work."""


@dataclass
class CarbonConfig:
    project_name: str = "hf-training"
    model_name: Optional[str] = None
    # ISO 3166 alpha-2 country of the machine (e.g. "FR"), or a cloud region
    # ("gcp:europe-west1"), for the grid's carbon intensity.
    country: Optional[str] = None
    region: Optional[str] = None
    # Seconds between checks of the probe's live totals (carbon budget, metrics).
    measurement_interval: float = 5.0
    export_prometheus: bool = False
    prometheus_port: int = 9091
    carbon_budget_kg: Optional[float] = None
    max_projects: int = 100
    aggregate_similar_models: bool = False
    label_cleanup_enabled: bool = True
    export_batch_size: int = 1000
    compression_enabled: bool = True
    price_per_kwh: Optional[float] = None
    gpu_hour_usd: Optional[float] = None
    pue: float = 1.0
    # Where run directories go when the callback starts the probe itself.
    output_dir: str = "runs"
    # eco2ai-probe binary; default: $ECO2AI_PROBE, then PATH.
    probe_path: Optional[str] = None
    extra_probe_args: list = field(default_factory=list)

    def __post_init__(self):
        self.validate()

    def validate(self):
        if not isinstance(self.project_name, str) or not self.project_name.strip():
            raise ConfigError("project_name must be a non-empty string")
        if self.country is not None:
            if not (isinstance(self.country, str) and len(self.country) == 2 and self.country.isalpha()):
                raise ConfigError(f"country must be an ISO 3166 alpha-2 code such as 'FR', got {self.country!r}")
            self.country = self.country.upper()
            if carbon.country_intensity(self.country) is None:
                raise ConfigError(f"country {self.country!r} has no grid intensity in the bundled table")
        if self.region is not None and carbon.region_intensity(self.region) is None:
            raise ConfigError(f"unknown cloud region {self.region!r}: expected 'provider:region' such as 'gcp:europe-west1'")
        positive = {
            "measurement_interval": self.measurement_interval,
            "pue": self.pue,
            "max_projects": self.max_projects,
            "export_batch_size": self.export_batch_size,
        }
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.pue < 1.0:
            raise ConfigError(f"pue must be >= 1.0 (a data centre cannot use less than its IT load), got {self.pue}")
        for name in ("carbon_budget_kg", "price_per_kwh", "gpu_hour_usd"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{name} must be a non-negative number or None, got {value!r}")
        if self.carbon_budget_kg is not None and self.country is None and self.region is None:
            raise ConfigError("carbon_budget_kg needs country or region: without a grid intensity energy cannot be turned into CO2")
        if not (isinstance(self.prometheus_port, int) and 0 < self.prometheus_port < 65536):
            raise ConfigError(f"prometheus_port must be 1..65535, got {self.prometheus_port!r}")

    def intensity_g_per_kwh(self):
        """Grid intensity for this config: region first, then country, else None."""
        if self.region:
            return carbon.region_intensity(self.region)
        if self.country:
            return carbon.country_intensity(self.country)
        return None
