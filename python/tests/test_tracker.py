import os

import pyarrow.parquet as pq

from hf_eco2ai import CarbonConfig, StepTracker


def test_plain_loop_marks_steps_and_summarises(tmp_path):
    tracker = StepTracker(CarbonConfig(project_name="plain", country="DE", output_dir=str(tmp_path)))
    for i in range(25):
        with tracker.step(samples=8) as s:
            s.loss = 1.0 / (i + 1)
    summary = tracker.close()
    t = pq.read_table(os.path.join(summary["run_dir"], "steps")).to_pydict()
    assert t["step"] == list(range(25))
    assert t["loss"] == [1.0 / (i + 1) for i in range(25)]
    assert summary["samples"] == 200 and summary["steps"] == 25
    assert summary["co2_kg"] is not None


def test_export_prometheus_serves_the_live_metrics(tmp_path):
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = CarbonConfig(project_name="live", country="FR", export_prometheus=True, prometheus_port=port,
                       carbon_budget_kg=2.0, output_dir=str(tmp_path))
    tracker = StepTracker(cfg)
    body = ""
    deadline = time.monotonic() + 20
    step = 0
    while 'hf_training_step_count{project_name="live"} ' not in body or body.split(
            'hf_training_step_count{project_name="live"} ')[1].split()[0] == "0":
        assert time.monotonic() < deadline, body
        with tracker.step(samples=4) as st:
            st.loss = 1.0
            time.sleep(0.05)
        step += 1
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'hf_training_carbon_budget_kg{project_name="live"} 2' in body
    assert 'hf_training_grid_carbon_intensity_g_per_kwh{country="FR",region=""}' in body
    tracker.close()
