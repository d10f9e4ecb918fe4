"""Hook module named by the ``robench`` entry point; imports no torch at import time."""

from __future__ import annotations

import dataclasses

import robench


@dataclasses.dataclass(frozen=True)
class GaussianNoiseOptions:
    draws: int = dataclasses.field(default=10, metadata={"help": "noise draws per input"})

    def __post_init__(self):
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, got {self.draws}")


class GaussianNoise(robench.FixedBudgetAttack):
    """Random Gaussian directions scaled to L2 norm eps; an input counts as broken if
    any of ``draws`` directions changes its prediction (a black-box noise baseline).

    A fixed-budget attack: it writes ``perturb`` for one eps, and robench's base class
    runs the sweep (eps = 0, projection onto the ball and the bounds, chunks, seeds,
    transfer sources)."""

    name = "example.gaussian_noise"
    library = "robench-example-plugin"
    library_version = "0.1.0"
    threat_model = robench.ThreatModel.L2
    Options = GaussianNoiseOptions

    def perturb(self, model, x, y, eps, *, bounds, targets=None, generator=None):
        import torch

        directions = torch.randn((self.options.draws, *x.shape), generator=generator)
        norms = directions.flatten(2).norm(dim=2).clamp_min(1e-12)
        directions = directions / norms.view(*norms.shape, *([1] * (x.dim() - 1)))
        best = x.clone()
        for d in directions:
            candidate = (x + eps * d.to(x.device)).clamp(*bounds)
            with torch.no_grad():
                broken = model(candidate).argmax(1) != y
            best[broken] = candidate[broken]
        return best


@robench.hookimpl
def robench_register_attacks(register):
    """Register the example attack."""
    register(GaussianNoise)
