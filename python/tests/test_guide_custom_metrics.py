"""The guide's custom metrics next to ours: hf_training_sustainability_score and
hf_training_carbon_offset_credits_total registered from Python (prometheus_client) on a
second exporter port, scraped with the probe's families by a real Prometheus."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from hf_eco2ai import CarbonConfig, StepTracker
from hf_eco2ai.metrics import CustomMetrics


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _session(tmp_path, project="custom"):
    cfg = CarbonConfig(project_name=project, model_name="gpt2-tiny", prometheus_port=_free_port(),
                       output_dir=str(tmp_path / "runs"))
    tracker = StepTracker(cfg)
    with tracker.step(samples=4):
        pass
    custom = CustomMetrics(cfg)
    custom.set_sustainability_score(87.5)
    custom.add_offset_credits(0.25)
    custom.add_offset_credits(0.25)
    return cfg, tracker, custom


def test_both_exporters_serve_their_families_side_by_side(tmp_path):
    cfg, tracker, custom = _session(tmp_path)
    try:
        addr = custom.serve(_free_port())
        ours = _get(f"http://127.0.0.1:{cfg.prometheus_port}/metrics")
        yours = _get(f"http://{addr}/metrics")
    finally:
        custom.close()
        tracker.close()
    assert 'hf_training_energy_kwh_total{project_name="custom",model_name="gpt2-tiny"}' in ours
    assert 'hf_training_sustainability_score{model_name="gpt2-tiny",project_name="custom"} 87.5' in yours
    assert 'hf_training_carbon_offset_credits_total{model_name="gpt2-tiny",project_name="custom"} 0.5' in yours
    # No family is served twice (Prometheus would see two owners of one name).
    names = lambda text: {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE")}
    assert names(ours).isdisjoint(names(yours) - {"python_info"})


def _query(base, promql):
    answer = json.loads(_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
    return answer["data"]["result"]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary on PATH")
def test_a_real_prometheus_scrapes_both_and_joins_them(tmp_path):
    cfg, tracker, custom = _session(tmp_path)
    prom_port = _free_port()
    proc = None
    try:
        addr = custom.serve(_free_port())
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: hf-eco2ai\n    static_configs: [{{targets: ['127.0.0.1:{cfg.prometheus_port}']}}]\n"
            f"  - job_name: hf-eco2ai-custom\n    static_configs: [{{targets: ['{addr}']}}]\n"
        )
        log = open(tmp_path / "prometheus.log", "w")
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=log,
        )
        base = f"http://127.0.0.1:{prom_port}"
        join = ('hf_training_sustainability_score * on(project_name) group_left '
                'hf_training_energy_kwh_total{job="hf-eco2ai"}')
        deadline = time.monotonic() + 60
        result = []
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            try:
                result = _query(base, join)
            except OSError:
                continue
        up = {r["metric"]["job"]: r["value"][1] for r in _query(base, "up")}
        credits = _query(base, "hf_training_carbon_offset_credits_total")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        custom.close()
        tracker.close()
    assert up == {"hf-eco2ai": "1", "hf-eco2ai-custom": "1"}
    assert len(result) == 1 and result[0]["metric"]["project_name"] == "custom"
    assert float(result[0]["value"][1]) > 0
    assert [c["value"][1] for c in credits] == ["0.5"]
