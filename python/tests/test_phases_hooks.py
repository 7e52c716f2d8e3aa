"""Which phases the callback marks from a real Trainer's hooks, and in what order against
the step markers: a recording stand-in for the marker library, no probe. The recorded
run's phases table is checked in test_phases.py."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

import hf_eco2ai.callback as callback_mod
from hf_eco2ai import CarbonConfig, Eco2AICallback
from hf_eco2ai.markers import Markers, check_phase_name, clean_phase_name, valid_phase_name


class _Lib:
    """The C functions Markers calls, appending ("what", arg) to `events`."""

    def __init__(self, events):
        self.events = events

    def eco2ai_step_begin(self, step):
        self.events.append(("step_begin", step))

    def eco2ai_step_end(self, ref):
        self.events.append(("step_end", ref._obj.step))  # ref: ctypes.byref(Step)

    def eco2ai_step_log(self, step, loss, lr):
        pass

    def eco2ai_eval(self, step, loss):
        pass


def fake_markers(events, phases=True):
    """A Markers whose library is `_Lib` (and phase functions, unless `phases` is False:
    a library from before phases)."""
    m = Markers.__new__(Markers)
    m.path = "fake"
    m._sync = None
    m._said_no_phases = False
    m.phases_open = []
    m._lib = _Lib(events)
    if phases:
        m._phase_begin = lambda name: events.append(("phase_begin", name.decode()))
        m._phase_end = lambda name: events.append(("phase_end", name.decode()))
    else:
        m._phase_begin = m._phase_end = None
    return m


class _Session:
    run_dir = "fake-run"
    joined = True
    marker_lib = "fake"
    meta = {}

    def live(self):
        return {"energy_j": 3.6e3, "elapsed_s": 1.0, "steps": 0, "samples": 0}

    def stop(self):
        pass


class _Saves(TrainerCallback):
    """Where the Trainer itself evaluated and saved (global steps)."""

    def __init__(self):
        self.evals, self.saves = [], []

    def on_evaluate(self, args, state, control, **kwargs):
        self.evals.append(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        self.saves.append(state.global_step)


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seq=8, vocab=32):
        g = torch.Generator().manual_seed(n)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


@pytest.fixture
def events(monkeypatch):
    recorded = []
    monkeypatch.setattr(callback_mod.ProbeSession, "join_or_start", classmethod(lambda cls, config: _Session()))
    monkeypatch.setattr(callback_mod, "Markers", lambda path: fake_markers(recorded))
    return recorded


def _train(tmp_path, cb, **args):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    saves = _Saves()
    defaults = dict(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=2, per_device_eval_batch_size=4,
                    report_to=[], use_cpu=True, disable_tqdm=True, logging_steps=1)
    defaults.update(args)
    trainer = Trainer(model=model, args=TrainingArguments(**defaults), train_dataset=_Tokens(40),
                      eval_dataset=_Tokens(8), callbacks=[cb, saves])
    trainer.train()
    return trainer, saves


def _phases(events):
    """[(name, step ended before its begin)] and a check that no step begins or ends
    inside a span, that every span ends, and ends before the next begins."""
    spans, open_name, last_end = [], None, 0
    for what, arg in events:
        if what == "step_end":
            assert open_name is None, f"step {arg} ended inside {open_name}"
            last_end = arg
        elif what == "step_begin":
            assert open_name is None, f"step {arg} began inside {open_name}"
        elif what == "phase_begin":
            assert open_name is None, f"{arg} began inside {open_name}"
            open_name = arg
            spans.append((arg, last_end))
        else:
            assert arg == open_name, (arg, open_name)
            open_name = None
    assert open_name is None, f"{open_name} never ended"
    return spans


def test_names_follow_the_trace_rule():
    for ok in ["eval", "checkpoint", "warm-up", "epoch:3", "a.b_c", "x" * 32, b"eval"]:
        assert valid_phase_name(ok), ok
        assert check_phase_name(ok) == (ok.decode() if isinstance(ok, bytes) else ok)
    for bad in ["", "with space", "ü", "a/b", "x" * 33, "nul\0", None, 3]:
        assert not valid_phase_name(bad), bad
        with pytest.raises(ValueError):
            check_phase_name(bad)
    assert clean_phase_name("data loader") == "data_loader"
    assert clean_phase_name("a" * 40) == "a" * 32
    assert valid_phase_name(clean_phase_name("évál"))
    # Cut at 32 bytes first, as the library does: a 2-byte character cut in half is one '_'.
    assert clean_phase_name("x" * 31 + "é") == "x" * 31 + "_"
    with pytest.raises(ValueError):
        clean_phase_name("")


def test_user_api_refuses_what_the_callback_cleans():
    events = []
    m = fake_markers(events)
    with pytest.raises(ValueError):
        m.phase_begin("data reload")
    with pytest.raises(ValueError):
        m.phase_end("eval")  # not open
    assert m.phase_begin("data reload", clean=True) == "data_reload"
    assert m.phase_end("data reload", clean=True) is True
    assert m.phase_end("eval", clean=True) is False
    for i in range(8):
        m.phase_begin(f"p{i}")
    with pytest.raises(ValueError):
        m.phase_begin("ninth")
    assert m.phase_begin("ninth", clean=True) is None
    for i in reversed(range(8)):
        m.phase_end(f"p{i}")
    assert events == [("phase_begin", "data_reload"), ("phase_end", "data_reload")] + [
        ("phase_begin", f"p{i}") for i in range(8)] + [("phase_end", f"p{i}") for i in reversed(range(8))]


def test_a_span_ends_when_the_block_raises_and_innermost_of_a_name_closes():
    events = []
    m = fake_markers(events)
    with pytest.raises(RuntimeError):
        with m.phase("eval"):
            assert m.phase_now == "eval"
            raise RuntimeError("boom")
    assert m.phase_now is None and events == [("phase_begin", "eval"), ("phase_end", "eval")]
    m.phase_begin("a")
    m.phase_begin("b")
    m.phase_begin("a")
    m.phase_end("a")
    assert m.phases_open == ["a", "b"] and not m.in_train
    with m.phase("train"):  # a span named train holds training steps, as the report says
        assert m.in_train


def test_an_older_library_is_said_once_and_never_fails(caplog):
    events = []
    m = fake_markers(events, phases=False)
    assert not m.has_phases
    with caplog.at_level("WARNING", logger="hf_eco2ai"):
        for _ in range(3):
            with m.phase("eval"):
                pass
    assert events == []
    assert caplog.text.count("predates phases") == 1


def test_steps_strategy_eval_then_checkpoint_after_the_right_steps(tmp_path, events):
    cb = Eco2AICallback(config=CarbonConfig(output_dir=str(tmp_path / "runs"), export_prometheus=False))
    trainer, saves = _train(tmp_path, cb, max_steps=20, eval_strategy="steps", eval_steps=5,
                            save_strategy="steps", save_steps=10)
    assert saves.evals == [5, 10, 15, 20] and saves.saves == [10, 20]
    assert _phases(events) == [("eval", 5), ("eval", 10), ("checkpoint", 10), ("eval", 15), ("eval", 20),
                               ("checkpoint", 20)]
    assert [a for w, a in events if w == "step_end"] == list(range(1, 21))
    assert cb.eval_batches == 4 * 2  # 8 eval samples in batches of 4, four evaluations
    assert cb.summary["samples"] == 40
    assert cb.markers is None and not cb._flow_open


def test_epoch_strategy_and_a_save_without_evaluation(tmp_path, events):
    cb = Eco2AICallback(config=CarbonConfig(output_dir=str(tmp_path / "runs"), export_prometheus=False))
    trainer, saves = _train(tmp_path, cb, num_train_epochs=2, eval_strategy="epoch", save_strategy="epoch")
    assert saves.evals == [20, 40] and saves.saves == [20, 40]
    assert _phases(events) == [("eval", 20), ("checkpoint", 20), ("eval", 40), ("checkpoint", 40)]
    del events[:]
    cb = Eco2AICallback(config=CarbonConfig(output_dir=str(tmp_path / "runs2"), export_prometheus=False))
    trainer, saves = _train(tmp_path, cb, max_steps=9, save_strategy="steps", save_steps=4)
    assert saves.saves == [4, 8, 9]
    assert _phases(events) == [("checkpoint", 4), ("checkpoint", 8), ("checkpoint", 9)]


def test_best_strategy_marks_only_the_saves_the_trainer_makes(tmp_path, events):
    cb = Eco2AICallback(config=CarbonConfig(output_dir=str(tmp_path / "runs"), export_prometheus=False))
    # A learning rate that makes the eval loss go up and down, so some evaluations are
    # not a new best.
    trainer, saves = _train(tmp_path, cb, max_steps=24, eval_strategy="steps", eval_steps=3, save_strategy="best",
                            metric_for_best_model="eval_loss", learning_rate=0.3)
    assert 0 < len(saves.saves) < len(saves.evals), (saves.saves, saves.evals)
    spans = _phases(events)
    assert [s for n, s in spans if n == "eval"] == saves.evals
    assert [s for n, s in spans if n == "checkpoint"] == saves.saves


def test_eval_on_start_and_evaluate_calls_open_eval_at_the_first_batch(tmp_path, events):
    cb = Eco2AICallback(config=CarbonConfig(output_dir=str(tmp_path / "runs"), export_prometheus=False))

    class _EvalAtStep3(TrainerCallback):
        trainer = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                self.trainer.evaluate()
                self.trainer.predict(_Tokens(4))

    extra = _EvalAtStep3()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=2, report_to=[],
                             use_cpu=True, disable_tqdm=True, max_steps=5, eval_strategy="no", eval_on_start=True,
                             save_strategy="no", per_device_eval_batch_size=4)
    trainer = Trainer(model=model, args=args, train_dataset=_Tokens(40), eval_dataset=_Tokens(8),
                      callbacks=[cb, extra])
    extra.trainer = trainer
    trainer.train()
    assert _phases(events) == [("eval", 0), ("eval", 3), ("eval", 3)]


def test_a_cleared_flag_never_leaves_a_span_over_training_and_user_phases_close(tmp_path, events):
    class _NoSave(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_save = False  # after ours: our checkpoint span is stale

    cb = Eco2AICallback(config=CarbonConfig(output_dir=str(tmp_path / "runs"), export_prometheus=False))

    class _UserPhase(TrainerCallback):
        span = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 5:
                # Never exited (kept, or the collector would end it): closed at train end.
                self.span = cb.phase("warm up")
                self.span.__enter__()

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=2, report_to=[],
                             use_cpu=True, disable_tqdm=True, max_steps=6, save_strategy="steps", save_steps=2)
    # _UserPhase's on_step_begin before ours: step 6 begins inside "warm_up".
    trainer = Trainer(model=model, args=args, train_dataset=_Tokens(40), callbacks=[_UserPhase(), cb, _NoSave()])
    trainer.train()
    names = [(w, a) for w, a in events if w.startswith("phase")]
    assert names == [("phase_begin", "checkpoint"), ("phase_end", "checkpoint"),
                     ("phase_begin", "checkpoint"), ("phase_end", "checkpoint"),
                     ("phase_begin", "warm_up"), ("phase_begin", "checkpoint"), ("phase_end", "checkpoint"),
                     ("phase_end", "warm_up")]
    # Each stale checkpoint ended before the next step began.
    assert events.index(("phase_end", "checkpoint")) < events.index(("step_begin", 3))
    # Steps 1-5 are training samples; step 6 began in "warm_up".
    assert cb.summary["samples"] == 5 * 2 and cb.summary["steps"] == 5
