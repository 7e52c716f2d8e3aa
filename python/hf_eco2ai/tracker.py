"""For training loops without Trainer: start or join the probe and mark steps.

    tracker = StepTracker(CarbonConfig(project_name="mlp", country="FR"))
    for batch in loader:
        with tracker.step(samples=len(batch)) as s:
            loss = train_step(batch)
            s.loss = loss.item()
    with tracker.phase("eval"):           # steps in here are eval steps: their
        for batch in val_loader:          # samples are not training samples
            with tracker.step(samples=len(batch)):
                evaluate(batch)
    print(tracker.close())   # the run summary
"""

import contextlib

from .markers import Markers
from .probe import ProbeSession
from . import report


class _StepInfo:
    def __init__(self):
        self.loss = None
        self.lr = None
        self.tokens = 0


class StepTracker:
    def __init__(self, config, session=None):
        self.config = config
        self.session = session or ProbeSession.join_or_start(config)
        self.markers = Markers(self.session.marker_lib)
        self.next_step = 0
        # Training samples only (steps begun outside any named phase): samples/kWh.
        self.samples = 0
        self.train_steps = 0
        self.summary = None
        self._train_at_begin = True

    def begin(self, step=None):
        self.current = self.next_step if step is None else int(step)
        # A step belongs to the phase its process was in when it began.
        self._train_at_begin = self.markers.in_train
        self.markers.begin(self.current)

    def end(self, samples=0, tokens=0, loss=None, lr=None, epoch=None):
        self.markers.end(self.current, samples, tokens, loss, lr, epoch)
        if self._train_at_begin:
            self.samples += int(samples or 0)
            self.train_steps += 1
        self.next_step = self.current + 1

    def phase_begin(self, name):
        """Opens phase `name` (1 to 32 of [A-Za-z0-9_.:-], else ValueError)."""
        self.markers.phase_begin(name)

    def phase_end(self, name):
        """Closes the innermost open phase `name` (ValueError if none is open)."""
        self.markers.phase_end(name)

    def phase(self, name):
        """`with tracker.phase("eval"):` a span of phase `name`, ended however the block
        ends; steps begun in it are that phase's, not training steps."""
        return self.markers.phase(name)

    @contextlib.contextmanager
    def step(self, samples=0, step=None):
        self.begin(step)
        info = _StepInfo()
        try:
            yield info
        finally:
            self.end(samples, info.tokens, info.loss, info.lr)

    def co2_so_far_kg(self):
        return report.co2_so_far_kg(self.session, self.config)

    def close(self):
        """Stops a probe started here and returns the run summary."""
        if self.summary is None:
            for name in reversed(list(self.markers.phases_open)):
                self.markers.phase_end(name)  # ended here rather than at the probe's stop
            self.session.stop()
            self.summary = report.summarise(self.session, self.config, samples=self.samples,
                                             steps=self.train_steps)
        return self.summary
