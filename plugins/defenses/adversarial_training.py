"""Adversarial training through any attack plugin's cheap ``perturb`` path."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from robench import Defense


@dataclasses.dataclass(frozen=True)
class AdversarialTrainingOptions:
    attack: str = dataclasses.field(
        default="torchattacks.PGD", metadata={"help": "attack plugin generating the examples",
                                              "component": "attack",
                                              "options_field": "attack_options"})
    eps: float = dataclasses.field(default=8 / 255, metadata={"help": "training budget"})
    attack_options: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"help": "options of the attack plugin, e.g. "
                                                "{ steps = 7, alpha = \"2/255\" }"})
    mix: float = dataclasses.field(
        default=1.0, metadata={"help": "weight of the adversarial loss: "
                                       "(1 - mix) * L(clean) + mix * L(adversarial)"})
    warmup_epochs: int = dataclasses.field(
        default=0, metadata={"help": "clean epochs before adversarial training starts"})
    labels: Literal["true", "predicted"] = dataclasses.field(
        default="true", metadata={"help": "attack the true labels, or the model's own "
                                          "predictions (Galloway et al.'s released code)"})

    def __post_init__(self):
        if not 0 <= self.mix <= 1:
            raise ValueError(f"mix must be in [0, 1], got {self.mix}")
        if self.eps < 0 or self.warmup_epochs < 0:
            raise ValueError("eps and warmup_epochs must be >= 0")


class AdversarialTraining(Defense):
    """Trains on adversarial examples: FGSM/PGD or any attack with a ``perturb`` path.

    After ``warmup_epochs`` clean epochs, each batch ``x`` becomes ``[x, x_adv]`` and the
    loss is ``(1 - mix) * L(x) + mix * L(x_adv)``, ``L`` being the stack's per-sample loss
    (cross-entropy unless the model or another defense changes it). Galloway et al. (2018) use
    mix 0.5 with 7-step PGD, eps 8/255, step 2/255, labels = the model's predictions,
    after 50 clean epochs; Madry et al. use mix 1. ``mix = 1`` skips the clean half.
    Examples are generated in eval mode with the attack plugin named by ``attack`` (e.g.
    ``torchattacks.FGSM``).
    """

    name = "adversarial_training"
    Options = AdversarialTrainingOptions

    def __init__(self, options=None):
        super().__init__(options)
        self._attack = None

    def transform_batch(self, model, x, y, epoch, ctx):
        import torch

        if epoch <= self.options.warmup_epochs:
            return x, y
        if self._attack is None:
            self._attack = ctx.attack(self.options.attack, dict(self.options.attack_options))
        model.eval()
        target = y
        if self.options.labels == "predicted":
            with torch.no_grad():
                target = model(x).argmax(1)
        x_adv = self._attack.perturb(model, x, target, self.options.eps,
                                     bounds=ctx.info.bounds, generator=ctx.generator).detach()
        model.train()
        if self.options.mix >= 1:
            return x_adv, y
        n, mix = len(x), self.options.mix
        weights = torch.cat([torch.full((n,), (1 - mix) / n), torch.full((n,), mix / n)])
        return torch.cat([x, x_adv]), torch.cat([y, y]), weights.to(x.device)
