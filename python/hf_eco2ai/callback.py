"""Eco2AICallback: marks every optimizer step and evaluation of a transformers Trainer
for eco2ai-probe, enforces the carbon budget from the probe's live totals, and
summarises the run at the end."""

import logging
import math
import time

from transformers import TrainerCallback

from . import report
from .config import CarbonConfig
from .markers import Markers
from .probe import ProbeSession

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

    def on_train_begin(self, args, state, control, **kwargs):
        self.session = ProbeSession.join_or_start(self.config)
        self.run_dir = self.session.run_dir
        self.markers = Markers(self.session.marker_lib)
        how = "joined" if self.session.joined else "started"
        log.info("hf-eco2ai: %s eco2ai-probe, run %s", how, self.run_dir)

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
        now = time.monotonic()
        if budget is None or now - self._last_check < self.config.measurement_interval:
            return
        self._last_check = now
        co2 = report.co2_so_far_kg(self.session, self.config)
        if co2 is not None and co2 > budget and not control.should_training_stop:
            self.budget_exceeded_at_step = state.global_step
            control.should_training_stop = True
            log.warning(
                "hf-eco2ai: carbon budget exceeded at step %d: %.6g kg CO2 > budget %.6g kg; stopping training",
                state.global_step, co2, budget,
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.session is None:
            return
        self.session.stop()
        self.summary = report.summarise(self.session, self.config, samples=self._samples)
        self.summary["budget_exceeded_at_step"] = self.budget_exceeded_at_step
        log.info("%s", report.one_line(self.summary))
        for integration in self.integrations:
            integration.send(self.summary)
        self.markers = None
