"""Phases recorded by the probe from Python: a real Trainer's evaluations and checkpoint
saves as `eval` and `checkpoint` spans in the run's phases table, and a StepTracker loop's
own spans, whose steps carry the phase and whose samples are not training samples."""

import json
import os
import shutil
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from hf_eco2ai import CarbonConfig, Eco2AICallback, StepTracker

ANALYZE = os.environ.get("ECO2AI_ANALYZE") or shutil.which("eco2ai-analyze")
PROBE_ARGS = [[], ["--no-ebpf"]]
IDS = ["default", "socket"]


def _source(probe_args):
    return "socket" if probe_args or os.geteuid() != 0 else "uprobe"


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seq=16, vocab=64):
        g = torch.Generator().manual_seed(n)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class _Flow(TrainerCallback):
    """The global steps at which the Trainer evaluated and saved."""

    def __init__(self):
        self.evals, self.saves = [], []

    def on_evaluate(self, args, state, control, **kwargs):
        self.evals.append(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        self.saves.append(state.global_step)


def _busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _table(run_dir, name):
    path = os.path.join(run_dir, name)
    if not os.path.isdir(path):
        return []
    t = pq.read_table(path).to_pydict()
    return [dict(zip(t, row)) for row in zip(*t.values())]


def _meta(run_dir):
    with open(os.path.join(run_dir, "meta.json")) as f:
        return json.load(f)


def _report(run_dir, repo):
    """eco2ai-analyze's report.json of the run; its `phases` sum to its energy."""
    analyze = ANALYZE or str(repo / "target" / "debug" / "eco2ai-analyze")
    assert os.access(analyze, os.X_OK), f"eco2ai-analyze not built at {analyze}: run cargo build"
    out = subprocess.run([analyze, "report", "--format", "json", run_dir], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    total = sum(line["energy_kwh"] for line in report["phases"].values())
    assert total == pytest.approx(report["energy_kwh"], rel=1e-6, abs=1e-12), report["phases"]
    return report


@pytest.mark.parametrize("probe_args", PROBE_ARGS, ids=IDS)
def test_trainer_evaluations_and_saves_are_phase_spans_between_steps(tmp_path, repo, probe_args):
    cfg = CarbonConfig(project_name="phases", country="FR", output_dir=str(tmp_path / "runs"),
                       export_prometheus=False, extra_probe_args=probe_args)
    cb, flow = Eco2AICallback(config=cfg), _Flow()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=40, per_device_train_batch_size=4,
                             per_device_eval_batch_size=8, eval_strategy="steps", eval_steps=10,
                             save_strategy="steps", save_steps=20, logging_steps=5, report_to=[], use_cpu=True,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=_Tokens(512), eval_dataset=_Tokens(16),
            callbacks=[cb, flow]).train()
    assert flow.evals == [10, 20, 30, 40] and flow.saves == [20, 40]

    run_dir = cb.run_dir
    steps = sorted(_table(run_dir, "steps"), key=lambda s: s["step"])
    assert [s["step"] for s in steps] == list(range(1, 41))
    assert all(s["phase"] is None for s in steps), "training steps are train (null)"
    phases = sorted(_table(run_dir, "phases"), key=lambda p: p["begin_ns"])
    # Each span lies between the end of the step that asked for it and the next step's
    # begin (the last ones before the recording's end), one process, in the Trainer's order.
    expected = [("eval", 10), ("eval", 20), ("checkpoint", 20), ("eval", 30), ("eval", 40), ("checkpoint", 40)]
    assert [p["name"] for p in phases] == [n for n, _ in expected], phases
    meta = _meta(run_dir)
    by_step = {s["step"]: s for s in steps}
    previous_end = meta["start_ns"]
    for p, (_, after) in zip(phases, expected):
        assert p["pid"] == os.getpid() and p["source"] == _source(probe_args), p
        assert previous_end <= p["begin_ns"] < p["end_ns"] <= meta["end_ns"], (p, previous_end)
        assert p["begin_ns"] >= by_step[after]["end_ns"], (p, by_step[after])
        if after + 1 in by_step:
            assert p["end_ns"] <= by_step[after + 1]["begin_ns"], (p, by_step[after + 1])
        previous_end = p["end_ns"]
    for s in steps:  # no span overlaps a training step of the same pid
        assert not any(p["begin_ns"] < s["end_ns"] and s["begin_ns"] < p["end_ns"] for p in phases), s
    assert cb.summary["samples"] == 160 and cb.eval_batches == 4 * 2
    report = _report(run_dir, repo)
    assert report["samples"] == 160
    lines = report["phases"]
    assert (lines["train"]["steps"], lines["train"]["samples"]) == (40, 160)
    assert (lines["eval"]["spans"], lines["eval"]["steps"]) == (4, 0)
    assert (lines["checkpoint"]["spans"], lines["checkpoint"]["steps"]) == (2, 0)


@pytest.mark.parametrize("probe_args", PROBE_ARGS, ids=IDS)
def test_step_tracker_phase_steps_carry_the_phase_and_are_not_training_samples(tmp_path, repo, probe_args):
    tracker = StepTracker(CarbonConfig(project_name="loop", country="DE", output_dir=str(tmp_path),
                                       export_prometheus=False, extra_probe_args=probe_args))
    with pytest.raises(ValueError):
        tracker.phase_begin("not a name")
    step_phases = []
    for i in range(30):
        name = "eval" if 10 <= i < 15 else "data-reload" if i == 25 else None
        if name == "eval" and i == 10:
            evaluating = tracker.phase("eval")
            evaluating.__enter__()
        if name == "data-reload":
            # An exception inside a span ends the span all the same.
            with pytest.raises(RuntimeError), tracker.phase("data-reload"):
                with tracker.step(samples=4):
                    raise RuntimeError("loader died")
            step_phases.append("data-reload")
            continue
        with tracker.step(samples=4 if name else 8) as s:
            _busy(0.02)  # the run lasts several of the CPU estimate's 100 ms polls
            s.loss = 1.0
        step_phases.append(name)
        if i == 14:
            evaluating.__exit__(None, None, None)
    summary = tracker.close()

    run_dir = summary["run_dir"]
    steps = sorted(_table(run_dir, "steps"), key=lambda s: s["step"])
    assert [s["step"] for s in steps] == list(range(30))
    assert [s["phase"] for s in steps] == step_phases
    phases = sorted(_table(run_dir, "phases"), key=lambda p: p["begin_ns"])
    assert [(p["name"], p["source"]) for p in phases] == [("eval", _source(probe_args)),
                                                          ("data-reload", _source(probe_args))]
    eval_steps = [s for s in steps if s["phase"] == "eval"]
    assert phases[0]["begin_ns"] <= eval_steps[0]["begin_ns"] and eval_steps[-1]["end_ns"] <= phases[0]["end_ns"]
    assert phases[0]["end_ns"] <= steps[15]["begin_ns"]
    # Training samples only: 24 training steps of 8 (not the 5 eval steps' 4 each, nor
    # the failed step's).
    assert summary["samples"] == 24 * 8 and summary["steps"] == 24
    report = _report(run_dir, repo)
    assert report["samples"] == 24 * 8
    lines = report["phases"]
    assert (lines["train"]["steps"], lines["train"]["samples"]) == (24, 24 * 8)
    assert (lines["eval"]["spans"], lines["eval"]["steps"], lines["eval"]["samples"]) == (1, 5, 20)
    assert (lines["data-reload"]["spans"], lines["data-reload"]["steps"]) == (1, 1)


def test_evaluate_without_training_is_marked_under_a_recording_around_it(tmp_path, probe_binary):
    out = str(tmp_path / "runs")
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "eval_only.py")
    cmd = [probe_binary, "record", "--no-metrics", "--out", out, "--run-id", "evalonly", "--", sys.executable,
           fixture, out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "eval_batches 5" in p.stdout  # 3 batches of evaluate(), 2 of predict()
    phases = sorted(_table(os.path.join(out, "evalonly"), "phases"), key=lambda r: r["begin_ns"])
    assert [r["name"] for r in phases] == ["eval", "eval"], phases
    assert phases[0]["end_ns"] <= phases[1]["begin_ns"]
    assert _table(os.path.join(out, "evalonly"), "steps") == []
