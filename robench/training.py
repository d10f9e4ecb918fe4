"""The host's training loop: optimizer, schedule, augmentation and defense hooks.

The loop itself holds no defense logic; it calls the :class:`robench.Defense` hooks of
the cell's stack at fixed points (see that class). After every epoch it measures loss
and accuracy on the training and test sets *in eval mode* (not the running training
loss), which the generalisation-gap metrics need (Wen et al. 2020): on a fixed seeded
subset of :data:`HISTORY_SUBSET` examples of each split before training and after every
epoch but the last, and on the full splits after the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .components import Defense, LoadedData, Model, TrainingContext
from .config import TrainingSpec
from .schema import HISTORY_SUBSET

HISTORY_SEED = 0
"""Seed of the history subsets: the same examples every epoch, for every cell, drawn
apart from the training randomness."""


def history_subset(n: int) -> torch.Tensor:
    """Indices (sorted) of the fixed subset of a split of ``n`` examples that the history
    measures between epochs: all of them when ``n <= HISTORY_SUBSET``."""
    if n <= HISTORY_SUBSET:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(HISTORY_SEED)
    return torch.randperm(n, generator=generator)[:HISTORY_SUBSET].sort().values


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard image augmentation: zero-pad by ``pad``, random crop back, random h-flip.

    Each image gets its own offsets and flip, drawn from ``generator``.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off_y = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    off_x = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (off_y[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (off_x[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, out.flip(-1), out)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    return loss / max(len(x), 1), correct / max(len(x), 1)


class NonFiniteTraining(FloatingPointError):
    """Training produced a loss or weights that are not finite (e.g. an infinite learning
    rate or a NaN coefficient)."""


def check_finite(model: nn.Module, bad_loss: torch.Tensor, epoch: int) -> None:
    """Raise :class:`NonFiniteTraining` if a batch loss of ``epoch`` (``bad_loss``: a
    boolean flag accumulated on the device) or any parameter is not finite."""
    if bool(bad_loss):
        raise NonFiniteTraining(f"the training loss became non-finite in epoch {epoch}; "
                                f"check the learning rate and the defenses' coefficients")
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise NonFiniteTraining(f"weight {name!r} became non-finite in epoch {epoch}; "
                                    f"check the learning rate and the defenses' "
                                    f"coefficients")


def _optimizer(model: nn.Module, spec: TrainingSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                               nesterov=spec.nesterov)
    return torch.optim.Adam(model.parameters(), lr=spec.lr)


def train(model: nn.Module, factory: Model, data: LoadedData, spec: TrainingSpec,
          defenses: Sequence[Defense], ctx: TrainingContext, *, progress: bool = True,
          desc: str = "train") -> pd.DataFrame:
    """Train ``model`` in place; return the per-epoch history.

    History columns: ``epoch`` (0 = before training), ``split`` ("train"/"test"),
    ``loss``, ``accuracy``, all measured in eval mode: on the full splits after the last
    epoch, on the fixed subsets of :func:`history_subset` before it.
    """
    from tqdm.auto import tqdm

    device = ctx.device
    optimizer = _optimizer(model, spec)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(spec.lr_milestones), gamma=spec.lr_gamma)
    x_train, y_train = data.x_train, data.y_train
    n = len(x_train)
    if n == 0 and spec.epochs > 0:
        raise ValueError(f"{desc}: {spec.epochs} training epochs, but data set "
                         f"{data.info.name!r} has no training samples here; load trained "
                         f"weights with the model's checkpoint option and set epochs = 0")
    rows = []

    splits = {"train": (x_train, y_train), "test": (data.x_test, data.y_test)}
    subsets = {name: (x[index], y[index]) for name, (x, y) in splits.items()
               for index in [history_subset(len(x))]}

    def record(epoch: int):
        for split, (x, y) in (splits if epoch == spec.epochs else subsets).items():
            loss, acc = evaluate(model, x, y, 512, device)
            rows.append({"epoch": epoch, "split": split, "loss": loss, "accuracy": acc})

    record(0)
    bar = tqdm(range(1, spec.epochs + 1), desc=desc, disable=not progress, leave=False,
               unit="epoch")
    for epoch in bar:
        model.train()
        bad_loss = torch.zeros((), dtype=torch.bool, device=device)
        perm = torch.randperm(n, generator=ctx.generator)
        for start in range(0, n, spec.batch_size):
            idx = perm[start:start + spec.batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            if spec.augment == "crop_flip":
                xb = crop_flip(xb, ctx.generator)
            weights = None
            for defense in defenses:
                xb, yb, *rest = defense.transform_batch(model, xb, yb, epoch, ctx)
                if rest:
                    if weights is not None:
                        raise RuntimeError(f"two defenses weight the batch; {defense.name!r} "
                                           f"cannot be stacked with another one that does")
                    weights = rest[0]
            model.train()
            logits = model(xb)
            per_sample = next((out for d in defenses if (out := d.sample_loss(
                model, logits, yb, ctx)) is not None), None)
            if per_sample is None:
                per_sample = factory.sample_loss(logits, yb)
            if per_sample is None:
                per_sample = F.cross_entropy(logits, yb, reduction="none")
            loss = per_sample.mean() if weights is None else (weights * per_sample).sum()
            for defense in defenses:
                term = defense.loss_term(model, ctx)
                if term is not None:
                    loss = loss + term
            bad_loss |= ~torch.isfinite(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for defense in defenses:
                defense.after_step(model, ctx)
        scheduler.step()
        for defense in defenses:
            defense.after_epoch(model, epoch, ctx)
        check_finite(model, bad_loss, epoch)
        record(epoch)
        bar.set_postfix(train_acc=f"{rows[-2]['accuracy']:.3f}",
                        test_acc=f"{rows[-1]['accuracy']:.3f}")
    model.eval()
    return pd.DataFrame(rows)
