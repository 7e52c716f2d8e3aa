"""Eco2AICallback: marks every optimizer step and evaluation of a transformers Trainer
for eco2ai-probe, enforces the carbon budget from the probe's live totals, and
summarises the run at the end.

    cb = Eco2AICallback(config=CarbonConfig(project_name="bert-ft", country="FR"),
                        integrations=[AWSCostExplorer(...), CarbonAccountingAPI(...)])

With export_prometheus (the default) the probe serves the live hf_training_* metrics on
127.0.0.1:prometheus_port while it trains (cb.metrics_addr; cb.metrics_off says why
not). Integrations: `enrich(summary)` first (cost sources), then `send(summary)`
(report sinks); see integrations.py.

Phases: an evaluation is an `eval` span (from the step that asks for it to on_evaluate,
or from the first on_prediction_step of an evaluate()/predict() called otherwise), a
checkpoint save a `checkpoint` span (after the evaluation, to on_save). Steps are never
marked inside them, and samples/kWh counts the training steps' samples only. Your own:
`with cb.phase("data-reload"): ...` (a name is cleaned to [A-Za-z0-9_.:-], 32 bytes)."""

import contextlib
import logging
import os
import time

from transformers import TrainerCallback

from . import report
from .config import CarbonConfig
from .markers import ENV_MARKER_LIB, Markers
from .probe import ENV_RUN_DIR, ProbeSession
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
        self._step_in_train = True
        self._samples = 0
        self._train_steps = 0
        self._last_check = 0.0
        self.metrics_addr = None
        self.metrics_off = None
        self.backward_sync = None
        self.eval_batches = 0  # on_prediction_step calls: evaluation/prediction batches
        # What the Trainer's flow opened ("eval", "checkpoint") and a save it has asked
        # for that waits for the evaluation to end: "yes", "if-best" or None.
        self._flow_open = set()
        self._save_after_eval = None
        self._outer_tried = False

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
            # A span the Trainer never ended (another callback cleared its flag) must
            # not take this training step.
            self._end_flow("eval")
            self._end_flow("checkpoint")
            self._step_in_train = self.markers.in_train
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
        if self._step_in_train:
            self._samples += samples  # training samples only (a user's phase is not)
            self._train_steps += 1
        self._in_step = False
        self._check_budget(state, control)
        # DefaultFlowCallback (before us) has decided; the Trainer logs, evaluates (then
        # on_evaluate) and saves (then on_save) after every on_step_end.
        self._flow_phases(args, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        # The epoch strategies decide here, with the same evaluate-then-save after it.
        if self.markers:
            self._flow_phases(args, control)

    def _flow_phases(self, args, control):
        # Nothing of the flow runs between here and the evaluation: one open is stale.
        self._end_flow("eval")
        self._end_flow("checkpoint")
        if control.should_evaluate:
            self._begin_flow("eval")
            if control.should_save:
                self._save_after_eval = "yes"
            elif _save_strategy(args) == "best":
                self._save_after_eval = "if-best"  # decided once the metrics are known
        elif control.should_save:
            self._begin_flow("checkpoint")

    def on_prediction_step(self, args, state, control, **kwargs):
        self.eval_batches += 1
        if self.markers is None and not self._outer_tried:
            self._outer_tried = True
            self._join_outer_recording()
        # evaluate()/predict() without the flow (eval_on_start, a user's call): the span
        # opens after the first batch, the first hook there is.
        if self.markers and "eval" not in self._flow_open:
            self._begin_flow("eval")

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        self._end_flow("eval")

    def on_save(self, args, state, control, **kwargs):
        self._end_flow("checkpoint")

    def phase(self, name):
        """`with cb.phase("data-reload"):` a span of your own phase in a Trainer run (the
        name cleaned to the rule); nothing is marked outside training."""
        if self.markers is None:
            return contextlib.nullcontext()
        return self.markers.phase(name, clean=True)

    def _begin_flow(self, name):
        if self.markers and name not in self._flow_open and self.markers.phase_begin(name, clean=True):
            self._flow_open.add(name)

    def _end_flow(self, name):
        if name in self._flow_open:
            self._flow_open.discard(name)
            if name == "eval":
                self._save_after_eval = None
            if self.markers:
                self.markers.phase_end(name, clean=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.markers and logs and "loss" in logs:
            self.markers.log(state.global_step, logs.get("loss"), logs.get("learning_rate"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.markers and metrics and "eval_loss" in metrics:
            self.markers.eval(state.global_step, metrics["eval_loss"])
        save = self._save_after_eval
        self._end_flow("eval")
        if save == "yes" and control.should_save or save == "if-best" and _is_new_best(args, state, metrics):
            self._begin_flow("checkpoint")

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
        self._end_all_phases()
        if self.backward_sync is not None:
            self.backward_sync.remove()
            self.backward_sync = None
        distributed = _barrier()  # every rank's last step is marked before the probe stops
        self.session.stop()
        # Under several ranks the probe's step rows count every rank's samples.
        self.summary = report.summarise(self.session, self.config, samples=None if distributed else self._samples,
                                        steps=None if distributed else self._train_steps)
        self.summary["budget_exceeded_at_step"] = self.budget_exceeded_at_step
        # One report per run, not one per rank.
        if int(os.environ.get("RANK", "0")) == 0:
            self._run_integrations("enrich")
            log.info("%s", report.one_line(self.summary))
            self._run_integrations("send")
        self.markers = None

    def _end_all_phases(self):
        """Every span still open ends here, not at the probe's stop."""
        self._end_flow("checkpoint")
        self._end_flow("eval")
        if self.markers:
            for name in reversed(list(self.markers.phases_open)):
                log.warning("hf-eco2ai: phase %r still open at train end; ended there", name)
                self.markers.phase_end(name, clean=True)

    def _join_outer_recording(self):
        """Outside training, marks evaluate()/predict() only under a recording around this
        process (`eco2ai-probe record -- python eval.py`): never starts a probe."""
        if os.environ.get(ENV_RUN_DIR) and os.environ.get(ENV_MARKER_LIB):
            try:
                self.markers = Markers.from_env()
            except OSError as e:
                log.warning("hf-eco2ai: evaluation not marked: %s", e)

    def _run_integrations(self, method):
        for integration in self.integrations:
            call = getattr(integration, method, None)
            if call is None:
                continue
            try:
                call(self.summary)
            except Exception as e:  # an integration never fails the training
                log.error("hf-eco2ai: %s.%s failed: %s: %s", type(integration).__name__, method, type(e).__name__, e)


def _save_strategy(args):
    strategy = getattr(args, "save_strategy", None)
    return str(getattr(strategy, "value", strategy))


def _is_new_best(args, state, metrics):
    """Whether the Trainer will save under save_strategy="best": its own test
    (Trainer._determine_best_metric), which runs after on_evaluate."""
    name = getattr(args, "metric_for_best_model", None)
    if name is None or not metrics:
        return False
    value = metrics.get(name if name.startswith("eval_") else f"eval_{name}")
    if value is None:
        return False
    best = state.best_metric
    if best is None:
        return True
    return value > best if args.greater_is_better else value < best


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
