"""Built-in reporters: each adds sections to ``report.html`` / ``report.md``.

They read only the stored run through :class:`robench.results.RunStore`, never a model:
numbers come from the metric rows (a reporter never recomputes what a metric defines),
run.json through :meth:`RunStore.record` (a typed :class:`robench.record.RunRecord`).
``filters`` is opt-in (list it in ``[report] reporters``). Those with a
``compare(runs)`` method also contribute to ``robench compare`` reports.
"""

from robench import hookimpl

from .curves import AccuracyCurves
from .examples import AdversarialExamples, FirstLayerFilters
from .gradients import LossGradients
from .headline import Headline
from .leaderboard import Leaderboard
from .metric_figures import MetricFigures
from .perturbations import TargetedPerturbations
from .provenance import Provenance
from .summary import Summary
from .training import TrainingCurves


@hookimpl
def robench_register_reporters(register):
    """Register the built-in reporters."""
    for cls in (Headline, Leaderboard, Summary, AccuracyCurves, MetricFigures, TrainingCurves,
                AdversarialExamples, TargetedPerturbations, FirstLayerFilters, LossGradients,
                Provenance):
        register(cls)
