"""Cost of the multi-node sync marks (docs/benchmarks.md): eco2ai_step_sync through
ctypes, and the callback's backward hooks (hf_eco2ai.sync.BackwardSync) on a small
GPT-2 on CPU. Run it plain, and under `eco2ai-probe record -- python scripts/bench_sync.py`
for the uprobe cost (root), with the repo's .venv python."""
import ctypes
import os
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "python"))


def marker_costs(n=200_000):
    lib = ctypes.CDLL(os.environ.get("ECO2AI_MARKER_LIB", os.path.join(ROOT, "target/debug/libeco2ai_marker.so")))
    lib.eco2ai_step_begin.argtypes = [ctypes.c_uint64]

    def best(fn):
        out = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            out = min(out, (time.perf_counter() - t) / n)
        return out * 1e9

    lib.eco2ai_step_begin(1)  # one open step: the sync marks are taken, not refused
    print(f"eco2ai_step_sync {best(lib.eco2ai_step_sync):.0f} ns/call; "
          f"bare ctypes call (eco2ai_marker_lost) {best(lib.eco2ai_marker_lost):.0f} ns/call")


def hook_cost(steps=60):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_eco2ai.sync import BackwardSync

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=32, n_embd=64, n_layer=4, n_head=4))
    x = torch.randint(0, 256, (2, 32))

    def median_step_ms():
        ts = []
        for _ in range(steps):
            t = time.perf_counter()
            model(input_ids=x, labels=x).loss.backward()
            model.zero_grad(set_to_none=True)
            ts.append(time.perf_counter() - t)
        return statistics.median(ts) * 1e3

    for _ in range(10):
        median_step_ms()
    plain = min(median_step_ms() for _ in range(3))
    marks = []
    sync = BackwardSync(model, lambda: marks.append(1))
    hooked = min(median_step_ms() for _ in range(3))
    sync.remove()
    tensors = sum(1 for p in model.parameters() if p.requires_grad)
    print(f"GPT-2 4 layers, {tensors} parameter tensors: {plain:.3f} ms/step plain, {hooked:.3f} ms hooked; "
          f"{len(marks)} marks in {3 * steps} steps")


if __name__ == "__main__":
    marker_costs()
    if os.environ.get("ECO2AI_RUN_DIR") is None:
        hook_cost()
