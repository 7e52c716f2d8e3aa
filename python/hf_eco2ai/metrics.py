"""Your own metrics next to the probe's, with prometheus_client.

The probe serves the live hf_training_* families on 127.0.0.1:prometheus_port (9091).
Families of your own (a sustainability score, offset credits bought) go on a second
exporter in the training process, and Prometheus scrapes both targets:

    from hf_eco2ai.metrics import CustomMetrics
    custom = CustomMetrics(config)            # the same CarbonConfig as the callback
    custom.serve(9092)                        # 127.0.0.1:9092/metrics
    custom.set_sustainability_score(87.5)     # hf_training_sustainability_score
    custom.add_offset_credits(0.2)            # hf_training_carbon_offset_credits_total

    # prometheus.yml
    scrape_configs:
      - job_name: hf-eco2ai            # the probe's families
        static_configs: [{targets: ["localhost:9091"]}]
      - job_name: hf-eco2ai-custom     # yours
        static_configs: [{targets: ["localhost:9092"]}]

Both carry project_name and model_name labels from the config, so the two jobs join
on them (`hf_training_sustainability_score * on(project_name) group_left ...`).
The config's cardinality options apply: at most max_projects distinct project_name
values get series (further ones are refused with a warning), aggregate_similar_models
normalises model_name as the probe's label is, and with label_cleanup_enabled
finish(project) removes a finished run's series.
"""

import logging

from .config import aggregate_model_name

log = logging.getLogger("hf_eco2ai")

SCORE = "hf_training_sustainability_score"
CREDITS = "hf_training_carbon_offset_credits"  # exposed as ..._total (a counter)


class CustomMetrics:
    def __init__(self, config, registry=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["project_name", "model_name"]
        self.sustainability_score = Gauge(
            SCORE, "Sustainability score of the run, 0..100 (your definition)", labels, registry=self.registry)
        self.carbon_offset_credits = Counter(
            CREDITS, "Carbon offset credits bought for the run, in tonnes CO2e", labels, registry=self.registry)
        self._projects = {}  # project -> set of model labels with series
        self.refused_projects = set()
        self._server = None

    def _labels(self, project, model):
        project = self.config.project_name if project is None else str(project)
        model = self.config.model_name if model is None else model
        if model is not None and self.config.aggregate_similar_models:
            model = aggregate_model_name(model)
        model = "" if model is None else str(model)
        if project not in self._projects:
            if len(self._projects) >= self.config.max_projects:
                if project not in self.refused_projects:
                    log.warning("hf-eco2ai: custom metrics: project %r refused, max_projects=%d reached",
                                project, self.config.max_projects)
                    self.refused_projects.add(project)
                return None
            self._projects[project] = set()
        self._projects[project].add(model)
        return project, model

    def set_sustainability_score(self, value, project=None, model=None):
        labels = self._labels(project, model)
        if labels is not None:
            self.sustainability_score.labels(*labels).set(float(value))
        return labels is not None

    def add_offset_credits(self, tonnes, project=None, model=None):
        labels = self._labels(project, model)
        if labels is not None:
            self.carbon_offset_credits.labels(*labels).inc(float(tonnes))
        return labels is not None

    def finish(self, project=None):
        """A run of `project` is over: with label_cleanup_enabled its series go (and its
        place under max_projects is freed); otherwise they stay."""
        project = self.config.project_name if project is None else str(project)
        if not self.config.label_cleanup_enabled or project not in self._projects:
            return False
        for model in self._projects.pop(project):
            for metric in (self.sustainability_score, self.carbon_offset_credits):
                try:
                    metric.remove(project, model)
                except KeyError:
                    pass
        return True

    def exposition(self):
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def serve(self, port, addr="127.0.0.1"):
        """Serves these families on http://addr:port/metrics (a thread)."""
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return f"{addr}:{self._server.server_port}"

    def close(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
