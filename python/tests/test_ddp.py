"""torchrun with two ranks on one node: one probe for the node, every rank's steps in
it with the rank's pid, one summary."""
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "ddp_train.py")


def test_two_ranks_share_one_probe(tmp_path):
    out, result = str(tmp_path / "runs"), str(tmp_path / "summary.json")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           FIXTURE, out, result]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = [d for d in os.listdir(out) if not d.startswith(".") and d != "hf"]
    assert len(runs) == 1, runs
    run_dir = os.path.join(out, runs[0])
    ranks = [json.loads(line) for line in open(os.path.join(run_dir, "ranks.jsonl"))]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    steps = pq.read_table(os.path.join(run_dir, "steps")).to_pydict()
    by_pid = {}
    for pid, step in zip(steps["pid"], steps["step"]):
        by_pid.setdefault(pid, []).append(step)
    assert sorted(by_pid) == sorted(r["pid"] for r in ranks)
    for pid, marked in by_pid.items():
        assert marked == list(range(1, 13)), (pid, marked)
    # Each rank marks the end of its backward pass (sync_ns) from its second step on: the
    # first backward only learns how many gradients a backward has.
    for pid, step, b, s, e in zip(steps["pid"], steps["step"], steps["begin_ns"], steps["sync_ns"], steps["end_ns"]):
        if step > 1:
            assert s is not None and b <= s <= e, (pid, step, b, s, e)
    summary = json.load(open(result))
    assert summary["run_dir"] == run_dir
    assert summary["steps"] == 24 and summary["samples"] == 96
