"""Sync marks from the end of each rank's backward pass, for multi-node jobs: the probe
records the last `eco2ai_step_sync` inside a step as its sync_ns, where the rank's own
compute ended and its wait on the step's gradient all-reduce began; the analyzer tells
a straggler from the ranks waiting for it by these marks.

A post-accumulate-grad hook on every trainable parameter counts the parameters whose
gradient is ready; the call that completes the count of the previous backward pass is
the end of this one, and marks. A forward pass of the model starts a new count (its
pre-hook), so evaluation passes, which have no backward, change nothing. The first
backward only learns the count: its step has no sync mark. A backward in which fewer
parameters get a gradient than in the one before marks nothing (its sync_ns is null,
never wrong).

On a GPU the hook runs when the CPU has queued the last gradient's kernels, which may be
long before the GPU has run them: the mark first waits for the compute stream to drain
(`wait`), so that sync_ns is when the rank's compute ended, not when its CPU ran ahead.
That wait holds the CPU for the tail of the backward only; the all-reduce, on its own
streams, is not waited for."""

import logging

log = logging.getLogger("hf_eco2ai")


class BackwardSync:
    def __init__(self, model, mark, wait=None):
        """Hooks `model`'s trainable parameters; `mark()` is called at the end of each
        backward pass (Markers.sync), after `wait()` (default: the current CUDA streams
        of the model's GPUs synchronised, nothing on CPU). Without
        `register_post_accumulate_grad_hook` (torch < 2.1) nothing is hooked and
        `self.active` is False."""
        self._mark = mark
        self._wait = wait if wait is not None else _cuda_wait(model)
        self._calls = 0
        self._expected = 0
        self._handles = []
        params = [p for p in model.parameters() if p.requires_grad]
        if not params or not all(hasattr(p, "register_post_accumulate_grad_hook") for p in params):
            log.info("hf-eco2ai: no sync marks (this torch has no register_post_accumulate_grad_hook)")
            return
        self._handles.append(model.register_forward_pre_hook(self._forward))
        for p in params:
            self._handles.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    @property
    def active(self):
        return bool(self._handles)

    def _forward(self, module, args):
        if self._calls:
            self._expected = self._calls
        self._calls = 0

    def _grad_ready(self, param):
        self._calls += 1
        if self._calls == self._expected:
            if self._wait is not None:
                self._wait()
            self._mark()

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []


def _cuda_wait(model):
    """Synchronises the current stream of each GPU holding a parameter of `model` (the
    stream autograd runs the hook's node on), or None for a model on CPU only."""
    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    if not devices:
        return None
    import torch

    def wait():
        for d in devices:
            torch.cuda.current_stream(d).synchronize()

    return wait
