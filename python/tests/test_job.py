"""Multi-node jobs on the Python side: the per-node rendezvous names the node, the run of
a job is found under OUT/job=<id>/node=<node>/, job_id is checked, and sync marks come
from the end of each backward pass."""
import json
import os
import socket

import pyarrow.parquet as pq
import pytest
import torch

from hf_eco2ai import CarbonConfig, StepTracker
from hf_eco2ai.config import ConfigError
from hf_eco2ai.probe import _find_run_dir, node_name, rendezvous_path
from hf_eco2ai.sync import BackwardSync


def test_the_rendezvous_file_names_the_node(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    assert node_name() == socket.gethostname()
    here = rendezvous_path(str(tmp_path), 4242)
    monkeypatch.setenv("SLURMD_NODENAME", "gpu-n2")
    there = rendezvous_path(str(tmp_path), 4242)
    # Two nodes whose launchers have the same pid on a shared output_dir do not collide.
    assert here != there and os.path.basename(there) == ".eco2ai-node-gpu-n2-4242.json"
    monkeypatch.setenv("SLURMD_NODENAME", "../../etc")
    assert os.path.dirname(rendezvous_path(str(tmp_path), 1)) == str(tmp_path)


def test_job_ids_are_checked_like_run_ids():
    assert CarbonConfig(job_id="slurm-77.1").job_id == "slurm-77.1"
    for bad in ["", ".x", "a/b", "../up", "x" * 129, 42]:
        with pytest.raises(ConfigError):
            CarbonConfig(job_id=bad)


def test_a_jobs_run_dir_is_found_under_job_and_node(tmp_path):
    out = str(tmp_path)
    assert _find_run_dir(out, "r1") is None
    d = tmp_path / "job=7" / "node=n1" / "r1"
    d.mkdir(parents=True)
    (d / "meta.json").write_text("{}")
    (tmp_path / "job=7" / "node=n2" / "r2").mkdir(parents=True)
    assert _find_run_dir(out, "r1") == str(d)
    assert _find_run_dir(out, "r2") is None, "no meta.json yet"
    flat = tmp_path / "r3"
    flat.mkdir()
    (flat / "meta.json").write_text("{}")
    assert _find_run_dir(out, "r3") == str(flat)


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def _train_step(model):
    loss = model(torch.randn(2, 4)).sum()
    loss.backward()


def test_backward_sync_marks_the_end_of_each_backward_pass():
    model = _tiny_model()
    marks = []
    order = []
    sync = BackwardSync(model, lambda: marks.append(len(order)))
    assert sync.active
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda p: order.append(p))
    _train_step(model)
    assert marks == [], "the first backward only learns how many gradients it has"
    for _ in range(3):
        _train_step(model)
    # Each mark came with the last of its backward's 4 gradients (3 already seen by the
    # later-registered hook), no earlier.
    assert marks == [7, 11, 15]
    # An evaluation forward without backward changes nothing.
    with torch.no_grad():
        model(torch.randn(2, 4))
    _train_step(model)
    assert len(marks) == 4
    # A removed hook marks nothing.
    sync.remove()
    _train_step(model)
    assert len(marks) == 4 and not sync.active


def test_the_mark_waits_for_the_device_first():
    model = _tiny_model()
    events = []
    BackwardSync(model, lambda: events.append("mark"), wait=lambda: events.append("wait"))
    for _ in range(3):
        _train_step(model)
    assert events == ["wait", "mark"] * 2
    # On CPU there is nothing to wait for.
    assert BackwardSync(_tiny_model(), lambda: None)._wait is None


def test_backward_sync_counts_trainable_parameters_only():
    model = _tiny_model()
    model[0].weight.requires_grad_(False)
    marks = []
    BackwardSync(model, lambda: marks.append(1))
    for _ in range(3):
        _train_step(model)
    assert len(marks) == 2


def test_sync_marks_reach_the_probe_and_the_job_layout(tmp_path, monkeypatch):
    for v in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "SLURMD_NODENAME"):
        monkeypatch.delenv(v, raising=False)
    cfg = CarbonConfig(project_name="job", job_id="py-job", export_prometheus=False, output_dir=str(tmp_path))
    tracker = StepTracker(cfg)
    assert tracker.markers.has_sync
    for i in range(5):
        with tracker.step(samples=2):
            if i % 2 == 0:
                tracker.markers.sync()
    summary = tracker.close()
    run_dir = summary["run_dir"]
    assert os.path.dirname(run_dir) == str(tmp_path / "job=py-job" / f"node={socket.gethostname()}")
    meta = json.load(open(os.path.join(run_dir, "meta.json")))
    assert meta["job"]["job_id"] == "py-job" and meta["job"]["id_source"] == "flag"
    t = pq.read_table(os.path.join(run_dir, "steps")).to_pydict()
    why = (meta.get("sensors"), meta.get("sensor_errors"), t)
    assert t["step"] == list(range(5)), why
    marked = [s is not None for s in t["sync_ns"]]
    assert marked == [True, False, True, False, True], why
    for b, s, e in zip(t["begin_ns"], t["sync_ns"], t["end_ns"]):
        assert s is None or b <= s <= e
