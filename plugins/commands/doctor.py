"""Gradient-masking probes on every trained model of a run (``robench doctor``).

Masking makes a defense look robust to gradient attacks without being robust (Athalye,
Carlini & Wagner (2018), Obfuscated Gradients Give a False Sense of Security). The
probes themselves are the attacks plugin's
:func:`robench_plugins.attacks.masking.masking_probe` (unbounded PGD must reach chance,
a black-box attack must not beat PGD, more PGD steps must not help the model); this
module only loads each cell's cached model through the runner's public API and feeds it
test inputs. Private implementation module: it is imported when the command runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robench.config import check_device, parse_experiment
from robench.errors import ConfigError, RobenchError
from robench.results import RunStore


def diagnose(run_dir: str | Path, *, eps: float | None = None, samples: int = 200,
             device: str | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ``(cell id, findings)`` per cell, or ``(cell id, reason)`` when a cell has no
    cached weights. ``eps`` defaults to the middle of the first attack's budget grid."""
    from robench.runner import Runner, resolve_device
    from robench_plugins.attacks.masking import masking_probe

    if samples < 1:
        raise ConfigError(f"expected a positive number of samples, got {samples}",
                          key="--samples")
    if eps is not None and not (math.isfinite(eps) and eps > 0):
        raise ConfigError(f"expected a positive budget, got {eps}", key="--eps")
    if device is not None:
        check_device(device, "--device")
    store = RunStore(run_dir)
    record = store.record()
    experiment = store.path / "experiment.toml"
    try:
        text = experiment.read_text(encoding="utf-8") if experiment.is_file() else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    try:
        spec = parse_experiment(record.experiment.config, file=str(experiment), text=text)
    except ConfigError as err:
        raise RobenchError(f"{store.run_json_path}: the recorded experiment is no longer "
                           f"valid: {err}") from None
    runner = Runner(spec, store.path, device=device, progress=False)
    worker = runner.worker(resolve_device(device or spec.device))
    if eps is None:
        grid = spec.attacks[0].epsilons
        eps = grid[len(grid) // 2]
    data = worker.data()
    x, y = data.x_test[:samples].to(worker.device), data.y_test[:samples].to(worker.device)
    for cell in runner.cells:
        if not worker.model_path(cell).is_file():
            yield cell.id, f"no cached weights in {worker.model_dir} (run the experiment first)"
            continue
        model, _ = worker.model(cell)
        yield cell.id, masking_probe(model, x, y, eps=eps, bounds=data.info.bounds,
                                     seed=cell.torch_seed % 2**31)
