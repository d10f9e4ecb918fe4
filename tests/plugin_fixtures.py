"""A third-party-style plugin used by the host tests, written with the public API only.

It provides a random-sign noise attack (a real, if weak, black-box Linf baseline), a
metric counting result rows, and a dataset of two well separated Gaussian blobs, so
host tests do not depend on the attack libraries.
"""

from __future__ import annotations

import dataclasses

import robench
from robench import Attack, AttackResult, DataInfo, Dataset, LoadedData, Metric, ThreatModel


@dataclasses.dataclass(frozen=True)
class NoiseOptions:
    repeats: int = 1


class SignNoise(Attack):
    """Adds eps * random sign to every input value (repeats = draws, the worst kept)."""

    name = "test.sign_noise"
    library = "tests"
    sweeps_itself = True  # one pass over the grid with the same draws at every eps
    threat_model = ThreatModel.LINF
    Options = NoiseOptions

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None):
        import torch

        signs = torch.randint(0, 2, (self.options.repeats, *x.shape), generator=generator)
        signs = signs.float() * 2 - 1
        advs = []
        for eps in epsilons:
            best = x.clone()
            for r in range(self.options.repeats):
                cand = (x + eps * signs[r]).clamp(*bounds)
                with torch.no_grad():
                    wrong = model(cand).argmax(1) != y
                best[wrong] = cand[wrong]
            advs.append(best)
        return AttackResult(epsilons=list(epsilons), adversarials=advs, library="tests",
                            library_version="1")


class Broken(Attack):
    """Always raises, to test that one failing unit does not stop the others."""

    name = "test.broken"
    library = "tests"
    sweeps_itself = True

    def run(self, model, x, y, epsilons, **kwargs):
        raise RuntimeError("this attack is broken on purpose")


class RowCount(Metric):
    """Number of result rows per attack (tests that metrics see every unit)."""

    name = "test.row_count"

    def from_results(self, results):
        import pandas as pd

        counts = results.groupby("attack").size()
        return pd.DataFrame({"attack": counts.index, "metric": "row_count",
                             "value": counts.values.astype(float)})


@dataclasses.dataclass(frozen=True)
class BlobOptions:
    n: int = 200
    separation: float = 0.5


class Blobs(Dataset):
    """Two Gaussian blobs in [0, 1]^4 (centres 0.5 -+ separation/2), clipped."""

    name = "test.blobs"
    Options = BlobOptions

    def load(self, root):
        import torch

        g = torch.Generator().manual_seed(0)
        n = self.options.n
        y = torch.arange(2 * n) % 2
        centre = 0.5 + (y.float()[:, None] - 0.5) * self.options.separation
        x = (centre + 0.1 * torch.randn(2 * n, 4, generator=g)).clamp(0, 1)
        info = DataInfo(name="test.blobs", input_shape=(4,), num_classes=2)
        return LoadedData(info, x[:n], y[:n], x[n:], y[n:])


@robench.hookimpl
def robench_register_attacks(register):
    register(SignNoise)
    register(Broken)


@robench.hookimpl
def robench_register_metrics(register):
    register(RowCount)


@robench.hookimpl
def robench_register_datasets(register):
    register(Blobs)
