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
