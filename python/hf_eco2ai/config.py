"""CarbonConfig: what a run is called, where it runs, how it is sampled and exported,
and what it may cost.

Defaults follow `eco2ai-probe record`: live metrics are served on 127.0.0.1:9091
(export_prometheus=True; if the port is taken the run still trains and the log says
why metrics are off) and measurement_interval=1.0 is the probe's default live-totals
period. One difference is deliberate: the CLI leaves the project label
empty when --project is not given, Python names it "hf-training" (a run id and an alert
need a name).

What each export option controls:
- export_prometheus / prometheus_port: the probe serves /metrics on 127.0.0.1:PORT, or
  is started with --no-metrics.
- measurement_interval (s): the probe's live-totals flush (--flush-interval, what the
  budget check reads) and the period of the budget check; the fast power/CPU polls that
  resolve steps (--nvml-interval 20 ms, --cpu-interval 100 ms, --rapl-interval 1 ms) are
  never made coarser by it, only finer. The NVML energy counter keeps the probe's 30 s
  (a read costs ~4 ms of CPU on Hopper; the 20 ms power samples carry the energy in
  between, and the analyzer anchors on readings >= 30 s apart): pass
  --nvml-energy-interval in extra_probe_args to change it.
- max_projects, label_cleanup_enabled, export_batch_size, compression_enabled: the
  multi-run exporter (`eco2ai-analyze replay`, see export.py) and the Python custom
  metrics (metrics.py). A live probe records one run: its label set is one project.
- aggregate_similar_models: the model label is normalised (organisation, checkpoint,
  step, version, date and hash suffixes dropped) so fine-tunes of one base model share
  a series; the report keeps the exact model_name.
"""

import re
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
    # Seconds between the probe's energy-counter readings and live-totals flushes, and
    # between carbon budget checks (see the module doc).
    measurement_interval: float = 1.0
    export_prometheus: bool = True
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
    # The multi-node job this node's run belongs to (the probe's --job-id); default: the
    # probe's own detection (SLURM_JOB_ID, else TORCHELASTIC_RUN_ID). Runs of a job go
    # in output_dir/job=<id>/node=<node>/.
    job_id: Optional[str] = None
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
        if self.country is not None and self.region is not None:
            # The probe's rule (eco2ai_trace::grid::resolve): one grid intensity, not two.
            raise ConfigError("give country or region, not both: each names a grid intensity")
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
        if not 0.01 <= self.measurement_interval <= 3600:
            raise ConfigError(f"measurement_interval must be 0.01..3600 s (the probe polls at 10 ms at most), got {self.measurement_interval!r}")
        if not 1.0 <= self.pue <= 10.0:
            raise ConfigError(f"pue must be 1.0..10 (a data centre cannot use less than its IT load), got {self.pue}")
        for name in ("carbon_budget_kg", "price_per_kwh", "gpu_hour_usd"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{name} must be a non-negative number or None, got {value!r}")
        if self.carbon_budget_kg is not None and self.country is None and self.region is None:
            raise ConfigError("carbon_budget_kg needs country or region: without a grid intensity energy cannot be turned into CO2")
        if self.job_id is not None and not (
            isinstance(self.job_id, str) and re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", self.job_id)
        ):
            # The probe's run-id rule: the id becomes a directory name.
            raise ConfigError(f"job_id must be 1-128 characters of [A-Za-z0-9._-] not starting with '.', got {self.job_id!r}")
        if not (isinstance(self.prometheus_port, int) and 0 < self.prometheus_port < 65536):
            raise ConfigError(f"prometheus_port must be 1..65535, got {self.prometheus_port!r}")

    def intensity_source(self):
        """Where the grid intensity comes from, in words (None without one)."""
        if self.region:
            return f"cloud region {self.region} (bundled cloud_region_intensity.csv)"
        if self.country:
            return f"country {self.country} (bundled grid_intensity_by_country.csv)"
        return None

    def model_label(self):
        """The model label exported: model_name, normalised when aggregate_similar_models."""
        if self.model_name is None or not self.aggregate_similar_models:
            return self.model_name
        return aggregate_model_name(self.model_name)

    def sampling_args(self):
        """The probe's sampling flags for measurement_interval (flags already given in
        extra_probe_args are left to them)."""
        ms = max(10, round(self.measurement_interval * 1000))
        flags = {
            "--flush-interval": min(ms, 10_000),
            "--cpu-interval": min(ms, 100),
            "--nvml-interval": min(ms, 20),
        }
        given = {str(a).split("=", 1)[0] for a in self.extra_probe_args}
        out = []
        for flag, value in flags.items():
            if flag not in given:
                out += [flag, f"{value}ms"]
        return out

    def intensity_g_per_kwh(self):
        """Grid intensity for this config: its region or its country (never both), else None."""
        if self.region:
            return carbon.region_intensity(self.region)
        if self.country:
            return carbon.country_intensity(self.country)
        return None


# Suffixes that tell runs of one model apart: checkpoints, steps, epochs, versions,
# dates, seeds, commit hashes. Stripped repeatedly from the end.
_MODEL_SUFFIX = re.compile(
    r"[-_.@](?:checkpoint|ckpt|step|steps|epoch|ep|seed|run|v|rev)[-_]?\d+(?:\.\d+)*$"
    r"|[-_.@]\d{4,}$"
    r"|[-_.@](?=[0-9a-f]*\d)[0-9a-f]{7,40}$"
    r"|[-_.@](?:final|best|last|latest)$"
)


def aggregate_model_name(name):
    """`org/bert-base-uncased-finetuned-sst2-checkpoint-500` -> `bert-base-uncased-finetuned-sst2`:
    lower case, no organisation prefix, no run-distinguishing suffixes."""
    label = str(name).strip().lower().rsplit("/", 1)[-1]
    while True:
        shorter = _MODEL_SUFFIX.sub("", label)
        if shorter == label or not shorter:
            return label
        label = shorter
