"""Eco2AICallback: marks every optimizer step and evaluation of a transformers Trainer
for eco2ai-probe, enforces the carbon budget from the probe's live totals, and
summarises the run at the end.

    cb = Eco2AICallback(config=CarbonConfig(project_name="bert-ft", country="FR"),
                        integrations=[AWSCostExplorer(...), CarbonAccountingAPI(...)])

With export_prometheus (the default) the probe serves the live hf_training_* metrics on
127.0.0.1:prometheus_port while it trains (cb.metrics_addr; cb.metrics_off says why
not). Integrations: `enrich(summary)` first (cost sources), then `send(summary)`
(report sinks); see integrations.py."""

import logging
import os
import time

from transformers import TrainerCallback

from . import report
from .config import CarbonConfig
from .markers import Markers
from .probe import ProbeSession
from .sync import BackwardSync

log = logging.getLogger("hf_eco2ai")


class Eco2AICallback(TrainerCallback):
    def __init__(self, config=None, integrations=None):
        self.config = config or CarbonConfig()
        self.integrations = list(integrations or [])
        self.session = None
        self.markers = None
        self.run_dir = None
        self.summary = None
        self.budget_exceeded_at_step = None
        self._in_step = False
        self._samples = 0
        self._last_check = 0.0
        self.metrics_addr = None
        self.metrics_off = None
        self.backward_sync = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.session = ProbeSession.join_or_start(self.config)
        self.run_dir = self.session.run_dir
        self.markers = Markers(self.session.marker_lib)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self.session.register_rank()
            # Where each rank's compute of a step ends: the job report's stragglers.
            model = kwargs.get("model")
            if model is not None and self.markers.has_sync:
                self.backward_sync = BackwardSync(model, self.markers.sync)
        how = "joined" if self.session.joined else "started"
        self.metrics_addr = getattr(self.session, "metrics_addr", None)
        self.metrics_off = getattr(self.session, "metrics_off", None)
        where = f"metrics on http://{self.metrics_addr}/metrics" if self.metrics_addr else f"metrics off: {self.metrics_off}"
        if self.session.joined:
            where = "metrics as the recording probe serves them"
        log.info("hf-eco2ai: %s eco2ai-probe, run %s, %s", how, self.run_dir, where)

    def on_step_begin(self, args, state, control, **kwargs):
        # With gradient accumulation this fires per micro-batch: mark the first.
        if self.markers and not self._in_step:
            self.markers.begin(state.global_step + 1)
            self._in_step = True

    def on_step_end(self, args, state, control, **kwargs):
        if not self.markers:
            return
        samples = args.per_device_train_batch_size * args.gradient_accumulation_steps
        lr = None
        scheduler = kwargs.get("lr_scheduler")
        if scheduler is not None:
            try:
                lr = scheduler.get_last_lr()[0]
            except (AttributeError, IndexError, TypeError):
                lr = None
        self.markers.end(state.global_step, samples=samples, lr=lr, epoch=state.epoch)
        self._samples += samples
        self._in_step = False
        self._check_budget(state, control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.markers and logs and "loss" in logs:
            self.markers.log(state.global_step, logs.get("loss"), logs.get("learning_rate"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.markers and metrics and "eval_loss" in metrics:
            self.markers.eval(state.global_step, metrics["eval_loss"])

    def _check_budget(self, state, control):
        budget = self.config.carbon_budget_kg
        if budget is None or control.should_training_stop:
            return
        co2 = None
        now = time.monotonic()
        if now - self._last_check >= self.config.measurement_interval:
            self._last_check = now
            co2 = report.co2_so_far_kg(self.session, self.config)
        exceeded = co2 is not None and co2 > budget
        # Under DDP every rank must stop at the same step or the others hang in their
        # next all-reduce: agree on it every step.
        exceeded = _any_rank(exceeded)
        if exceeded:
            self.budget_exceeded_at_step = state.global_step
            control.should_training_stop = True
            log.warning(
                "hf-eco2ai: carbon budget exceeded at step %d: %s kg CO2 > budget %.6g kg; stopping training",
                state.global_step, f"{co2:.6g}" if co2 is not None else "(another rank's reading)", budget,
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.session is None:
            return
        if self.backward_sync is not None:
            self.backward_sync.remove()
            self.backward_sync = None
        distributed = _barrier()  # every rank's last step is marked before the probe stops
        self.session.stop()
        # Under several ranks the probe's step rows count every rank's samples.
        self.summary = report.summarise(self.session, self.config, samples=None if distributed else self._samples)
        self.summary["budget_exceeded_at_step"] = self.budget_exceeded_at_step
        # One report per run, not one per rank.
        if int(os.environ.get("RANK", "0")) == 0:
            self._run_integrations("enrich")
            log.info("%s", report.one_line(self.summary))
            self._run_integrations("send")
        self.markers = None

    def _run_integrations(self, method):
        for integration in self.integrations:
            call = getattr(integration, method, None)
            if call is None:
                continue
            try:
                call(self.summary)
            except Exception as e:  # an integration never fails the training
                log.error("hf-eco2ai: %s.%s failed: %s: %s", type(integration).__name__, method, type(e).__name__, e)


def _distributed():
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _barrier():
    dist = _distributed()
    if dist is not None:
        dist.barrier()
    return dist is not None


def _any_rank(flag):
    """True if `flag` is true on any rank (a MAX all-reduce under torch.distributed)."""
    dist = _distributed()
    if dist is None:
        return flag
    import torch

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
