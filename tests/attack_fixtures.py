"""Tiny models and data shared by the attack tests (imported by tests/test_attacks_*.py).

Everything is small enough for a 2-core CPU: scikit-learn's 8x8 digits scaled to
[0, 1] and an MLP trained for 150 full-batch Adam steps (~91% test accuracy).
"""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as ``(x_train, y_train, x_test, y_test)``, images ``(N, 1, 8, 8)`` in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@functools.lru_cache(maxsize=1)
def digits_mlp() -> nn.Module:
    """An MLP (64-32-10) trained on digits; eval mode, gradients off for parameters."""
    torch.manual_seed(0)
    x, y, _, _ = digits()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def first_test_digits(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test digits and labels."""
    _, _, x, y = digits()
    return x[:n].clone(), y[:n].clone()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@functools.lru_cache(maxsize=1)
def builtin_registry():
    """A registry of the built-in plugins only."""
    from robench.plugins import build_registry

    return build_registry(autoload=False)


def make(name: str, **options):
    """Instantiate the built-in attack ``name`` with ``options`` parsed as from TOML."""
    from robench.options import parse_options

    cls = builtin_registry().get("attack", name)
    return cls(parse_options(cls.Options, options))


def linear_two_logit(d: int = 20, seed: int = 0) -> nn.Module:
    """A random two-logit linear model on ``d`` features (small weights: no saturation)."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=gen) / d**0.5)
        model.bias.copy_(torch.randn(2, generator=gen) * 0.1)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
