"""For training loops without Trainer: start or join the probe and mark steps.

    tracker = StepTracker(CarbonConfig(project_name="mlp", country="FR"))
    for batch in loader:
        with tracker.step(samples=len(batch)) as s:
            loss = train_step(batch)
            s.loss = loss.item()
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
        self.samples = 0
        self.summary = None

    def begin(self, step=None):
        self.current = self.next_step if step is None else int(step)
        self.markers.begin(self.current)

    def end(self, samples=0, tokens=0, loss=None, lr=None, epoch=None):
        self.markers.end(self.current, samples, tokens, loss, lr, epoch)
        self.samples += int(samples or 0)
        self.next_step = self.current + 1

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
            self.session.stop()
            self.summary = report.summarise(self.session, self.config, samples=self.samples)
        return self.summary
