"""Finding, starting or joining the eco2ai-probe recorder, and reading its live totals."""

import errno
import json
import logging
import os
import socket
import shutil
import signal
import subprocess
import time

import re

from .markers import ENV_MARKER_LIB


def safe_run_id(project, stamp, pid):
    """A run id the probe accepts: one path component of [A-Za-z0-9._-], not starting
    with '.', at most 128 bytes (the probe refuses anything else, as it must: the id
    becomes a directory name). The project name is cleaned, not trusted."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", project or "").lstrip(".") or "run"
    tail = f"-{stamp}-{pid}"
    return name[: 128 - len(tail)] + tail

ENV_RUN_DIR = "ECO2AI_RUN_DIR"
ENV_PROBE = "ECO2AI_PROBE"
ENV_MARKER_SOCKET = "ECO2AI_MARKER_SOCKET"


logger = logging.getLogger("hf_eco2ai")


def node_name():
    """This node's name as the probe sees it (Slurm's SLURMD_NODENAME, else the host
    name), cleaned to one path component."""
    name = os.environ.get("SLURMD_NODENAME") or socket.gethostname() or "node"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:64] or "node"


def rendezvous_path(output_dir, launcher):
    """Where local rank 0 tells the node's other ranks which run it started. It names the
    node: output_dir is often on a filesystem every node shares, where launcher pids of
    two nodes can be equal."""
    return os.path.join(output_dir, f".eco2ai-node-{node_name()}-{launcher}.json")


def _find_run_dir(output_dir, run_id):
    """The run directory the probe made: OUT/<run id>, or OUT/job=<id>/node=<node>/<run
    id> when it recorded a node of a job (its own detection of --job-id, SLURM_JOB_ID,
    TORCHELASTIC_RUN_ID decides)."""
    flat = os.path.join(output_dir, run_id)
    if os.path.exists(os.path.join(flat, "meta.json")):
        return flat
    for job in _listdir(output_dir):
        if job.startswith("job="):
            for node in _listdir(os.path.join(output_dir, job)):
                d = os.path.join(output_dir, job, node, run_id)
                if node.startswith("node=") and os.path.exists(os.path.join(d, "meta.json")):
                    return d
    return None


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def port_free(port, host="127.0.0.1"):
    """None if `host:port` can be bound now, else why not (in words)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use"
            return f"{host}:{port} cannot be bound: {e.strerror}"
    return None


def metrics_args(config):
    """(probe flags, metrics address or None, why metrics are off or None)."""
    if not config.export_prometheus:
        return ["--no-metrics"], None, "export_prometheus=False"
    addr = f"127.0.0.1:{config.prometheus_port}"
    busy = port_free(config.prometheus_port)
    if busy:
        return ["--no-metrics"], None, f"{busy} (set CarbonConfig.prometheus_port to a free port)"
    return ["--metrics-addr", addr], addr, None


class ProbeError(RuntimeError):
    """The probe could not be found, started or read."""


def find_probe(path=None):
    """The eco2ai-probe binary: `path`, else $ECO2AI_PROBE, else PATH."""
    for candidate in (path, os.environ.get(ENV_PROBE), shutil.which("eco2ai-probe")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ProbeError(
        "eco2ai-probe not found: build it (cargo xtask run) and put it on PATH, "
        "or set ECO2AI_PROBE or CarbonConfig.probe_path"
    )


def _read_json(path):
    with open(path) as f:
        return json.load(f)


class ProbeSession:
    """A run being recorded: joined (this process runs under `eco2ai-probe record`) or
    started here for this process (`eco2ai-probe record --pid`)."""

    def __init__(self, run_dir, proc=None):
        self.run_dir = run_dir
        self.proc = proc
        self.meta = _read_json(os.path.join(run_dir, "meta.json"))

    @property
    def joined(self):
        return self.proc is None

    @property
    def marker_lib(self):
        if self.joined and not getattr(self, "_shared", False):
            return os.environ.get(ENV_MARKER_LIB)
        return self.meta.get("marker_lib")

    @classmethod
    def join_or_start(cls, config, pid=None, timeout=60.0):
        """Joins the probe recording this process, or starts one. With several processes
        per node (torchrun, accelerate: LOCAL_RANK/WORLD_SIZE set), one probe per node:
        local rank 0 starts it on the launcher (the ranks' parent, so every rank is in
        the recorded tree) and the other local ranks join it."""
        run_dir = os.environ.get(ENV_RUN_DIR)
        if run_dir:
            return cls(run_dir)
        if pid is None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
            return cls._node_shared(config, timeout)
        return cls.start(config, pid or os.getpid(), timeout)

    @classmethod
    def _node_shared(cls, config, timeout):
        launcher = os.getppid()
        rendezvous = rendezvous_path(config.output_dir, launcher)
        if int(os.environ["LOCAL_RANK"]) == 0:
            session = cls.start(config, launcher, timeout)
            tmp = rendezvous + f".{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"run_dir": session.run_dir}, f)
            os.replace(tmp, rendezvous)
            return session
        deadline = time.monotonic() + timeout
        while not os.path.exists(rendezvous):
            if time.monotonic() > deadline:
                raise ProbeError(f"local rank 0 did not start the node's probe within {timeout} s ({rendezvous})")
            time.sleep(0.05)
        session = cls(_read_json(rendezvous)["run_dir"])
        socket = session.meta.get("marker_socket")
        if socket:
            os.environ[ENV_MARKER_SOCKET] = socket
        session._shared = True
        return session

    def register_rank(self):
        """Appends this process's rank to ranks.jsonl, to map step rows (by pid) to ranks."""
        entry = {k.lower(): int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE") if k in os.environ}
        entry["pid"] = os.getpid()
        with open(os.path.join(self.run_dir, "ranks.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")

    @classmethod
    def start(cls, config, pid, timeout=60.0):
        probe = find_probe(config.probe_path)
        run_id = safe_run_id(config.project_name, time.strftime('%Y%m%d-%H%M%S', time.gmtime()), pid)
        cmd = [probe, "record", "--pid", str(pid), "--out", config.output_dir, "--run-id", run_id]
        if config.job_id is not None:
            cmd += ["--job-id", str(config.job_id)]
        cmd += ["--project", config.project_name]
        for flag, value in (
            ("--model", config.model_label()),
            ("--country", config.country),
            ("--region", config.region),
            ("--carbon-budget-kg", config.carbon_budget_kg),
            ("--price-per-kwh", config.price_per_kwh),
            ("--gpu-hour-usd", config.gpu_hour_usd),
        ):
            if value is not None:
                cmd += [flag, str(value)]
        cmd += ["--pue", str(config.pue)]
        cmd += config.sampling_args()
        flags, metrics_addr, metrics_off = metrics_args(config)
        cmd += flags
        cmd += [str(a) for a in config.extra_probe_args]
        os.makedirs(config.output_dir, exist_ok=True)
        log_path = os.path.join(config.output_dir, f".{run_id}.probe.log")
        log = open(log_path, "w")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while (run_dir := _find_run_dir(config.output_dir, run_id)) is None:
            if proc.poll() is not None:
                log.close()
                with open(log_path) as f:
                    raise ProbeError(f"eco2ai-probe exited with {proc.returncode}: {f.read().strip()}")
            if time.monotonic() > deadline:
                proc.kill()
                raise ProbeError(f"eco2ai-probe did not create {run_id}/meta.json in {config.output_dir} within {timeout} s")
            time.sleep(0.02)
        session = cls(run_dir, proc)
        session._log = log
        session._log_path = log_path
        session.metrics_addr, session.metrics_off = metrics_addr, metrics_off
        session._check_metrics()
        socket = session.meta.get("marker_socket")
        if socket:
            # The marker library reads this at its first call.
            os.environ[ENV_MARKER_SOCKET] = socket
        return session

    metrics_addr = None
    metrics_off = None

    def _check_metrics(self, wait_s=10.0):
        """Confirms the probe serves /metrics (it may lose a race for the port: it then
        records without metrics and says so in its log). The probe's own log line
        decides: a connection alone could reach whoever took the port."""
        if self.metrics_addr is None:
            if self.metrics_off:
                logger.warning("hf-eco2ai: live metrics off: %s", self.metrics_off)
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                with open(self._log_path) as f:
                    text = f.read()
            except OSError:
                text = ""
            for line in text.splitlines():
                if "live metrics not served" in line:
                    self.metrics_addr, self.metrics_off = None, line.split("eco2ai-probe: ", 1)[-1]
                    logger.warning("hf-eco2ai: live metrics off: %s", self.metrics_off)
                    return
                if "live metrics on " in line:
                    return
            if self.proc is not None and self.proc.poll() is not None:
                return  # the probe ended; stop() reports why
            time.sleep(0.02)
        logger.warning("hf-eco2ai: the probe did not say within %.0f s whether it serves %s",
                       wait_s, self.metrics_addr)

    def live(self):
        """The probe's running totals (live.json), or None before its first flush."""
        try:
            return _read_json(os.path.join(self.run_dir, "live.json"))
        except (OSError, ValueError):
            return None

    def stop(self, timeout=60.0):
        """Stops a probe started here and waits for it to close the run; a joined probe
        goes on recording the command it runs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise ProbeError(f"eco2ai-probe did not stop within {timeout} s; killed (the run is readable, cut off)")
        self._log.close()
        self.meta = _read_json(os.path.join(self.run_dir, "meta.json"))
