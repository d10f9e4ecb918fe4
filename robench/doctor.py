"""``robench doctor``: gradient-masking probes on every trained model of a run.

Masking makes a defense look robust to gradient attacks without being robust (Athalye
et al. 2018). The probes themselves are the attacks plugin's
:func:`robench_plugins.attacks.masking.masking_probe` (unbounded PGD must reach chance,
a black-box attack must not beat PGD, more PGD steps must not help the model); this
module only rebuilds each cell's model from the run's cache and feeds it test inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import parse_experiment
from .errors import RobenchError
from .results import RunStore


def diagnose(run_dir: str | Path, *, eps: float | None = None, samples: int = 200,
             device: str | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ``(cell id, findings)`` per cell, or ``(cell id, reason)`` when a cell has no
    cached weights. ``eps`` defaults to the middle of the first attack's budget grid."""
    from robench_plugins.attacks.masking import masking_probe

    from .runner import Runner, resolve_device

    store = RunStore(run_dir)
    record = store.read_run()
    experiment = store.path / "experiment.toml"
    spec = parse_experiment(record["experiment"]["config"], file=str(experiment),
                            text=experiment.read_text() if experiment.is_file() else "")
    runner = Runner(spec, store.path, device=device, progress=False)
    runner.device = resolve_device(device or spec.device)
    runner.record = record
    if eps is None:
        grid = spec.attacks[0].epsilons
        eps = grid[len(grid) // 2]
    if eps <= 0:
        raise RobenchError(f"--eps must be positive, got {eps}")
    data = runner.data()
    x, y = data.x_test[:samples].to(runner.device), data.y_test[:samples].to(runner.device)
    for cell in runner.cells:
        if not runner.model_path(cell).is_file():
            yield cell.id, f"no cached weights in {runner.model_dir} (run the experiment first)"
            continue
        model = runner.model_for(cell)
        yield cell.id, masking_probe(model, x, y, eps=eps, bounds=data.info.bounds,
                                     seed=cell.torch_seed % 2**31)
