"""Built-in reporters: each adds sections to ``report.html`` / ``report.md``.

They read only the stored run (results, metrics, histories, artifacts, run.json) through
:class:`robench.results.RunStore`, never a model. Those with a ``compare(runs)`` method
also contribute to ``robench compare`` reports.
"""

from robench import hookimpl

from .curves import AccuracyCurves
from .examples import AdversarialExamples, FirstLayerFilters
from .leaderboard import Leaderboard
from .metric_figures import MetricFigures
from .provenance import Provenance
from .summary import Summary
from .training import TrainingCurves


@hookimpl
def robench_register_reporters(register):
    """Register the built-in reporters."""
    for cls in (Leaderboard, Summary, AccuracyCurves, MetricFigures, TrainingCurves,
                AdversarialExamples, FirstLayerFilters, Provenance):
        register(cls)
