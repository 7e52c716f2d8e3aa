"""CarbonConfig's options do what their names say (the guide's snippet), and the
defaults agree with `eco2ai-probe record`'s."""

import json
import logging
import os
import re
import socket
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from hf_eco2ai import CarbonConfig, ConfigError, StepTracker
from hf_eco2ai import probe as probe_mod
from hf_eco2ai.export import replay, replay_args
from hf_eco2ai.metrics import CustomMetrics


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _track(cfg, steps=3):
    t = StepTracker(cfg)
    for _ in range(steps):
        with t.step(samples=2):
            pass
    return t


def _cli_default(help_text, flag):
    m = re.search(re.escape(flag) + r" <[A-Z_]+>\s+(?:.|\n)*?\[default: ([^\]]+)\]", help_text)
    return m.group(1)


def test_defaults_agree_with_the_cli(probe_binary):
    help_text = subprocess.run([probe_binary, "record", "--help"], capture_output=True, text=True).stdout
    c = CarbonConfig()
    assert c.export_prometheus is True
    assert f"127.0.0.1:{c.prometheus_port}" == _cli_default(help_text, "--metrics-addr")
    args = dict(zip(c.sampling_args()[::2], c.sampling_args()[1::2]))
    ms = {"1s": 1000, "100ms": 100, "20ms": 20}
    for flag in ("--cpu-interval", "--nvml-interval"):
        assert int(args[flag][:-2]) == ms[_cli_default(help_text, flag)], flag
    # The energy counter is left at the probe's default (30 s: ~4 ms of CPU a read).
    assert "--nvml-energy-interval" not in args
    assert _cli_default(help_text, "--nvml-energy-interval") == "30s"


@pytest.mark.parametrize("interval_s, want_ms", [
    (0.05, {"nvml_energy": 30000, "flush": 50, "cpu": 50, "nvml": 20}),
    (2.0, {"nvml_energy": 30000, "flush": 2000, "cpu": 100, "nvml": 20}),
])
def test_measurement_interval_sets_the_probes_sampling(tmp_path, interval_s, want_ms):
    cfg = CarbonConfig(project_name="mi", measurement_interval=interval_s, output_dir=str(tmp_path),
                       export_prometheus=False)
    t = _track(cfg)
    t.close()
    sampling = t.session.meta["sampling"]
    got = {k: sampling[f"{k}_interval_ns"] // 1_000_000 for k in want_ms}
    assert got == want_ms


def test_extra_probe_args_win_over_measurement_interval(tmp_path):
    cfg = CarbonConfig(project_name="mi", measurement_interval=2.0, output_dir=str(tmp_path),
                       export_prometheus=False, extra_probe_args=["--cpu-interval", "50ms"])
    t = _track(cfg)
    t.close()
    assert t.session.meta["sampling"]["cpu_interval_ns"] == 50_000_000


def test_export_prometheus_serves_on_the_port_or_not(tmp_path):
    port = _free_port()
    t = _track(CarbonConfig(project_name="served", prometheus_port=port, output_dir=str(tmp_path)))
    text = _scrape(port)
    t.close()
    assert 'hf_training_energy_kwh_total{project_name="served"' in text
    assert not _listening(port), "the port is released with the probe"

    t = _track(CarbonConfig(project_name="quiet", prometheus_port=port, export_prometheus=False,
                            output_dir=str(tmp_path)))
    try:
        assert not _listening(port)
        assert t.session.metrics_off == "export_prometheus=False"
    finally:
        t.close()


def test_a_taken_port_trains_on_and_says_why_metrics_are_off(tmp_path, caplog):
    from test_trainer import _trainer

    from hf_eco2ai import Eco2AICallback

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cb = Eco2AICallback(config=CarbonConfig(project_name="busy", prometheus_port=port, output_dir=str(tmp_path)))
        with caplog.at_level(logging.INFO, logger="hf_eco2ai"):
            _trainer(tmp_path, cb, max_steps=3).train()
    assert cb.summary["steps"] == 3
    assert cb.metrics_addr is None and "already in use" in cb.metrics_off
    assert f"live metrics off: 127.0.0.1:{port} is already in use" in caplog.text


def test_losing_the_port_race_to_another_process_is_noticed(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(probe_mod, "port_free", lambda port, host="127.0.0.1": None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
            t = _track(CarbonConfig(project_name="race", prometheus_port=port, output_dir=str(tmp_path)))
            summary = t.close()
    assert summary["steps"] == 3
    assert t.session.metrics_addr is None and "Address already in use" in t.session.metrics_off
    assert "live metrics off" in caplog.text


@pytest.mark.parametrize("aggregate, label", [(True, "bert-base-uncased-finetuned-sst2"),
                                              (False, "acme/bert-base-uncased-finetuned-sst2-checkpoint-500")])
def test_aggregate_similar_models_normalises_the_model_label(tmp_path, aggregate, label):
    cfg = CarbonConfig(project_name="agg", model_name="acme/bert-base-uncased-finetuned-sst2-checkpoint-500",
                       aggregate_similar_models=aggregate, output_dir=str(tmp_path), export_prometheus=False)
    t = _track(cfg, steps=1)
    t.close()
    assert t.session.meta["labels"]["model_name"] == label


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, probe_binary):
    out = tmp_path_factory.mktemp("fleet")
    runs = []
    # alpha long enough for several replayed time points (remote_write batches end on one).
    for project, duration in (("alpha", "4500ms"), ("beta", "1500ms"), ("gamma", "1500ms")):
        subprocess.run([probe_binary, "record", "--duration", duration, "--out", str(out), "--run-id", project,
                        "--project", project, "--no-metrics"], check=True, capture_output=True, timeout=60)
        runs.append(str(out / project))
    return runs


def _projects_in(path):
    with open(path) as f:
        return set(re.findall(r'project_name="([^"]*)"', f.read()))


def test_max_projects_bounds_the_replayed_label_set(tmp_path, three_runs):
    for max_projects, want in ((2, 2), (100, 3)):
        om = tmp_path / f"m{max_projects}.om"
        done = replay(CarbonConfig(max_projects=max_projects), three_runs, openmetrics=om)
        assert done.returncode == 0, done.stderr
        assert len(_projects_in(om)) == want
        assert _projects_in(om) <= {"alpha", "beta", "gamma"}


class _RemoteWrite:
    def __init__(self):
        self.posts = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # Header names are case-insensitive (an HTTP client may send them lowercase).
                outer.posts.append(({k.lower(): v for k, v in self.headers.items()}, len(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/v1/write"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_export_batch_size_sets_the_remote_write_batches(three_runs):
    counts = {}
    for batch in (10, 100_000):
        srv = _RemoteWrite()
        try:
            done = replay(CarbonConfig(export_batch_size=batch), three_runs[:1], remote_write=srv.url)
        finally:
            srv.httpd.shutdown()
            srv.httpd.server_close()
        assert done.returncode == 0, done.stderr
        assert all(h.get("content-encoding") == "snappy" for h, _ in srv.posts)
        counts[batch] = len(srv.posts)
    assert counts[100_000] == 1
    # Batches end on a time point: several requests at 10 samples, one in all.
    assert counts[10] >= 3
    with pytest.raises(ConfigError, match="snappy"):
        replay_args(CarbonConfig(compression_enabled=False), three_runs, remote_write="http://127.0.0.1:1/w")


def test_label_cleanup_sets_how_long_finished_runs_stay():
    on = replay_args(CarbonConfig(), ["r"], serve="127.0.0.1:0")
    off = replay_args(CarbonConfig(label_cleanup_enabled=False), ["r"], serve="127.0.0.1:0")
    assert on[on.index("--stale-after-s") + 1] == "300"
    assert int(off[off.index("--stale-after-s") + 1]) >= 365 * 24 * 3600


def test_custom_metrics_obey_the_cardinality_options():
    m = CustomMetrics(CarbonConfig(project_name="p0", model_name="org/m-checkpoint-9", max_projects=2,
                                   aggregate_similar_models=True))
    assert m.set_sustainability_score(80)
    assert m.set_sustainability_score(70, project="p1")
    assert not m.set_sustainability_score(60, project="p2"), "a third project is over max_projects"
    text = m.exposition()
    assert 'hf_training_sustainability_score{model_name="m",project_name="p0"} 80.0' in text
    assert 'project_name="p2"' not in text
    assert m.finish("p0")
    assert 'project_name="p0"' not in m.exposition()
    assert m.set_sustainability_score(60, project="p2"), "p0's place is free again"
    keep = CustomMetrics(CarbonConfig(label_cleanup_enabled=False))
    keep.add_offset_credits(0.5)
    assert not keep.finish()
    assert 'hf_training_carbon_offset_credits_total{model_name="",project_name="hf-training"} 0.5' in keep.exposition()
