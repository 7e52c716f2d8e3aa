"""hf-eco2ai: energy, cost and CO2 of every training step, recorded by eco2ai-probe.

    from hf_eco2ai import CarbonConfig, Eco2AICallback
    trainer = Trainer(..., callbacks=[Eco2AICallback(config=CarbonConfig(project_name="bert-ft"))])
"""

from .config import CarbonConfig, ConfigError
from .integrations import AWSCostExplorer, CarbonAccountingAPI, HttpReport
from .markers import Markers
from .probe import ProbeError, ProbeSession
from .tracker import StepTracker

__all__ = [
    "AWSCostExplorer",
    "CarbonAccountingAPI",
    "CarbonConfig",
    "ConfigError",
    "Eco2AICallback",
    "HttpReport",
    "Markers",
    "ProbeError",
    "ProbeSession",
    "StepTracker",
]


def __getattr__(name):
    # The callback imports transformers; load it only when asked for.
    if name == "Eco2AICallback":
        from .callback import Eco2AICallback

        return Eco2AICallback
    raise AttributeError(name)
