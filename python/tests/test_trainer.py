"""A real transformers Trainer trains a tiny, randomly initialised GPT-2 on CPU under the
callback; the probe records it."""

import logging
import os

import pyarrow.parquet as pq
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from hf_eco2ai import CarbonConfig, Eco2AICallback


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=512, seq=16, vocab=64):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(tmp_path, callback, max_steps):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return Trainer(model=model, args=args, train_dataset=_Tokens(), callbacks=[callback])


def _steps(run_dir):
    t = pq.read_table(os.path.join(run_dir, "steps")).to_pydict()
    return [dict(zip(t, row)) for row in zip(*t.values())]


@pytest.mark.parametrize("probe_args", [[], ["--no-ebpf"]], ids=["default", "socket"])
def test_one_step_row_per_optimizer_step_with_the_logged_loss(tmp_path, probe_args):
    cfg = CarbonConfig(project_name="tiny", model_name="gpt2-tiny", country="FR", output_dir=str(tmp_path / "runs"),
                       price_per_kwh=0.2, extra_probe_args=probe_args)
    cb = Eco2AICallback(config=cfg)
    trainer = _trainer(tmp_path, cb, max_steps=40)
    trainer.train()

    assert cb.run_dir and os.path.isdir(cb.run_dir)
    steps = _steps(cb.run_dir)
    assert [s["step"] for s in steps] == list(range(1, 41))
    logged = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert len(logged) == 40
    for s in steps:
        assert s["begin_ns"] < s["end_ns"]
        assert s["samples"] == 4
        assert s["loss"] == pytest.approx(logged[s["step"]], rel=1e-6), s
        assert s["lr"] is not None
    sources = {s["source"] for s in steps}
    assert sources == ({"socket"} if probe_args else {"uprobe" if os.geteuid() == 0 else "socket"})
    summary = cb.summary
    assert summary["steps"] == 40
    assert summary["energy_kwh"] > 0 and summary["co2_kg"] > 0 and summary["cost"]["energy_usd"] > 0
    assert summary["samples_per_kwh"] == pytest.approx(160 / summary["energy_kwh"])


def test_a_tiny_budget_stops_training_with_a_log_line(tmp_path, caplog):
    cfg = CarbonConfig(project_name="budget", country="FR", carbon_budget_kg=1e-12, measurement_interval=0.05,
                       output_dir=str(tmp_path / "runs"))
    cb = Eco2AICallback(config=cfg)
    trainer = _trainer(tmp_path, cb, max_steps=100_000)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        trainer.train()
    assert cb.budget_exceeded_at_step is not None
    assert trainer.state.global_step < 100_000
    assert trainer.state.global_step == cb.budget_exceeded_at_step
    assert "carbon budget exceeded at step" in caplog.text
    assert cb.summary["co2_kg"] > 1e-12
