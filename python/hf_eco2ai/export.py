"""Runs into Prometheus after (or across) training: `eco2ai-analyze replay` with the
CarbonConfig's export options.

    from hf_eco2ai.export import replay
    replay(config, ["runs/a", "runs/b"], remote_write="http://127.0.0.1:9090/api/v1/write")

- max_projects -> --max-projects: runs of projects beyond this many are left out (the
  label bound of a multi-run exporter; a live probe serves one run, one project).
- label_cleanup_enabled -> --stale-after-s (with serve=): a finished run's series
  disappear 300 s (run time) after its end; disabled, they stay for a year.
- export_batch_size -> --batch-samples: samples per remote_write request.
- compression_enabled: remote_write bodies are snappy-compressed, as the protocol
  requires; compression_enabled=False cannot be honoured there and is refused.
"""

import os
import shutil
import subprocess

from .config import ConfigError
from .probe import ENV_PROBE

ENV_ANALYZE = "ECO2AI_ANALYZE"
STALE_AFTER_S = 300
KEEP_S = 365 * 24 * 3600


def find_analyze():
    """eco2ai-analyze: $ECO2AI_ANALYZE, beside the probe, then PATH."""
    probe = os.environ.get(ENV_PROBE)
    beside = os.path.join(os.path.dirname(probe), "eco2ai-analyze") if probe else None
    for candidate in (os.environ.get(ENV_ANALYZE), beside, shutil.which("eco2ai-analyze")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("eco2ai-analyze not found: set ECO2AI_ANALYZE or put it on PATH")


def replay_args(config, runs, serve=None, remote_write=None, openmetrics=None):
    """The `eco2ai-analyze replay` arguments for `runs` and one destination."""
    if sum(x is not None for x in (serve, remote_write, openmetrics)) != 1:
        raise ValueError("give exactly one of serve=, remote_write=, openmetrics=")
    args = ["replay", "--max-projects", str(int(config.max_projects))]
    if serve is not None:
        stale_s = STALE_AFTER_S if config.label_cleanup_enabled else KEEP_S
        args += ["--serve", str(serve), "--stale-after-s", str(stale_s)]
    elif remote_write is not None:
        if not config.compression_enabled:
            raise ConfigError("compression_enabled=False: remote_write requires snappy-compressed bodies")
        args += ["--remote-write", str(remote_write), "--batch-samples", str(int(config.export_batch_size))]
    else:
        args += ["--openmetrics", str(openmetrics)]
    return args + [str(r) for r in runs]


def replay(config, runs, serve=None, remote_write=None, openmetrics=None, timeout_s=600):
    """Runs the replay to its end (serve= runs until the playback ends); returns the
    CompletedProcess (stderr says which runs were left out and why)."""
    cmd = [find_analyze()] + replay_args(config, runs, serve, remote_write, openmetrics)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
