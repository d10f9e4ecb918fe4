"""Tsipras et al.'s synthetic distribution (Tsipras et al., "Robustness may be at odds with
accuracy", eq. 3)."""

from __future__ import annotations

import dataclasses
import math

from robench import DataInfo, Dataset, LoadedData


@dataclasses.dataclass(frozen=True)
class TsiprasOptions:
    p: float = dataclasses.field(
        default=0.7, metadata={"help": "probability that the robust feature x1 equals y"})
    d: int = dataclasses.field(
        default=100, metadata={"help": "number of weakly correlated features x2..x(d+1)"})
    eta: float | None = dataclasses.field(
        default=None, metadata={"help": "mean shift of the weak features, N(eta*y, 1); "
                                        "default 4/sqrt(d) (Theorem 2.2)"})
    n_train: int = dataclasses.field(default=10000, metadata={"help": "training samples"})
    n_test: int = dataclasses.field(default=2000, metadata={"help": "test samples"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the generator"})

    def __post_init__(self):
        if not 0.5 < self.p < 1:
            raise ValueError(f"p must be in (0.5, 1), got {self.p}")
        if self.d < 1 or self.n_train < 1 or self.n_test < 1:
            raise ValueError("d, n_train and n_test must be >= 1")
        if self.eta is not None and self.eta <= 0:
            raise ValueError(f"eta must be > 0, got {self.eta}")


class Tsipras(Dataset):
    """Synthetic robust-vs-non-robust features (Tsipras et al. 2019, eq. 3).

    ``y`` is uniform in {-1, +1}; ``x1 = y`` with probability ``p`` else ``-y`` (the
    robust feature); ``x2..x(d+1) ~ N(eta*y, 1)`` i.i.d. (the non-robust features).
    Class 0 is ``y = -1`` and class 1 is ``y = +1``. Inputs are feature vectors of
    length ``d + 1`` with unbounded values. Theorem 2.1: any classifier with standard
    accuracy ``1 - delta`` has Linf adversarial accuracy at most ``p/(1-p) * delta`` at
    ``eps >= 2*eta``. Train and test sets come from independent streams of ``seed``.
    """

    name = "tsipras"
    Options = TsiprasOptions

    @property
    def eta(self) -> float:
        """The weak features' mean shift (``4/sqrt(d)`` unless given)."""
        o = self.options
        return o.eta if o.eta is not None else 4 / math.sqrt(o.d)

    def sample(self, n: int, generator):
        """Draw ``n`` samples ``(x, labels)`` from a torch generator; labels in {0, 1}."""
        import torch

        o = self.options
        y = torch.randint(0, 2, (n,), generator=generator) * 2 - 1
        agree = torch.rand(n, generator=generator) < o.p
        x1 = torch.where(agree, y, -y).float()
        weak = torch.randn(n, o.d, generator=generator) + self.eta * y[:, None].float()
        return torch.cat([x1[:, None], weak], dim=1), ((y + 1) // 2).long()

    def load(self, root):
        import torch

        o = self.options
        # independent streams: train from 2*seed, test from 2*seed + 1
        gens = [torch.Generator().manual_seed(2 * o.seed + i) for i in (0, 1)]
        x_tr, y_tr = self.sample(o.n_train, gens[0])
        x_te, y_te = self.sample(o.n_test, gens[1])
        info = DataInfo(name=self.name, input_shape=(o.d + 1,), num_classes=2,
                        bounds=(-math.inf, math.inf), eps_scale=1, class_names=("-1", "+1"),
                        source=f"synthetic (Tsipras et al. 2019, eq. 3): p={o.p}, d={o.d}, "
                               f"eta={self.eta:.6g}, seed={o.seed}")
        return LoadedData(info, x_tr, y_tr, x_te, y_te)
