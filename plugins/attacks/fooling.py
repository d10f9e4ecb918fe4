"""Fooling images: targeted gradient steps from noise (Galloway et al. 2018, section 6.1).

Written by hand: a targeted FGSM/BIM from generated noise, answering the whole eps sweep
from one gradient per (noise, target) for the single-step test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from robench import Attack, AttackProperties, AttackResult, ThreatModel

READOUT_TEMPERATURE = 0.25
"""Galloway et al.'s read-out of fooling-image confidences: their released graph computes
``softmax(logits * logits_temperature)`` and their fooling-image script feeds 0.25."""


@dataclasses.dataclass(frozen=True)
class FoolingOptions:
    """Options of :class:`FoolingImages`."""

    noise_samples: int = dataclasses.field(
        default=1000, metadata={"help": "noise inputs, each pushed towards every class "
                                        "(used when the host gives no targets)"})
    steps: int = dataclasses.field(
        default=1, metadata={"help": "1: one targeted FGSM step of size eps (Figure 9); "
                                     ">1: that many steps of step_size within eps (Figure 8)"})
    step_size: float = dataclasses.field(
        default=0.005, metadata={"help": "step size of the iterative variant (steps > 1)"})
    init: Literal["uniform", "gray"] = dataclasses.field(
        default="uniform", metadata={"help": "uniform: U(bounds) noise (Figure 9); "
                                             "gray: 0.5 + U(0, 0.1) (Figure 8)"})
    batch_size: int = dataclasses.field(
        default=500, metadata={"help": "inputs per gradient computation"})
    readout_temperature: float = dataclasses.field(
        default=READOUT_TEMPERATURE,
        metadata={"help": "factor on the logits of the second confidence read-out (the "
                          "authors read confidences from softmax(logits * 0.25)); 1 repeats "
                          "the host's own read-out"})

    def __post_init__(self):
        if self.noise_samples < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("noise_samples, steps and batch_size must be positive, got "
                             f"{self.noise_samples}, {self.steps}, {self.batch_size}")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if not self.readout_temperature > 0:
            raise ValueError(f"readout_temperature must be positive, got "
                             f"{self.readout_temperature}")


class _SingleStepSweep(Sequence):
    """Adversarials of a single-step sweep, built on access: ``clip(noise + eps * s)``.

    Keeps only the noise and the step signs, so a 256-eps sweep over 10,000 images never
    holds 256 copies of the inputs.
    """

    def __init__(self, noise, signs, epsilons, bounds):
        self.noise, self.signs, self.epsilons, self.bounds = noise, signs, list(epsilons), bounds

    def __len__(self) -> int:
        return len(self.epsilons)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return (self.noise + float(self.epsilons[i]) * self.signs).clamp(*self.bounds)


class _ScaledLogits:
    """``model`` with its logits multiplied by ``factor`` (a read-out, never trained)."""

    def __init__(self, model, factor: float):
        self.model, self.factor = model, factor

    def __call__(self, x):
        return self.model(x) * self.factor


class FoolingImages(Attack):
    """Fooling images from noise (Galloway et al. 2018, section 6.1), targeted.

    *Figure 9* (``steps = 1``, ``init = "uniform"``): noise drawn from U(bounds); for every
    target class one targeted FGSM step of size eps, ``clip(noise - eps *
    sign(grad CE(model(noise), target)))``. The step direction does not depend on eps, so
    one gradient per (noise, target) answers the whole sweep exactly. *Figure 8*
    (``steps = 50``, ``step_size = 0.005``, ``init = "gray"``, eps = 1): start from
    0.5 + U(0, 0.1) and take ``steps`` signed steps, projected to the eps-ball around
    the start and the bounds (BIM; eps = 1 is unbounded on [0, 1] images).

    Inputs come from the generator, not the data (``source="noise"``, labels -1). With
    host targets (one per input row) each row gets its own noise; without, ``noise_samples``
    noise inputs are each pushed towards every class (all k targets, the paper's Figure 9)
    and the targets are returned in the result's ``targets``. Success is argmax == target;
    the host's ``confidence`` and ``margin`` columns give Figure 9's 0.5-threshold rate and
    its margin M at temperature 1.

    The authors read confidences at ``softmax(logits * 0.25)``; the option
    ``readout_temperature`` (default 0.25) gives that second read-out, measured on the
    evaluated model exactly as the host measures its own (:func:`robench.evaluation.predict`
    on the scaled logits): ``details["readout_confidence"]`` and
    ``details["readout_margin"]`` are ``(E, N)`` tensors aligned with the result's inputs,
    and ``details["readout_temperature"]`` the factor.

    The noise (and, without host targets, the target order) depends only on the
    generator, which the host seeds from the attack and the seed: every model of one seed
    starts from the same noise (common random numbers).
    """

    name = "fooling_images"
    library = "robench"
    sweeps_itself = True  # one gradient per (noise, target) answers every eps
    Options = FoolingOptions
    threat_model = ThreatModel.UNBOUNDED
    supports_targets = True
    properties = AttackProperties(starts_from_input=False, deterministic=True,
                                  monotone=False, bounded=False)

    def _noise(self, n: int, shape, bounds, generator, device):
        import torch

        u = torch.rand((n, *shape), generator=generator).to(device)
        if self.options.init == "gray":
            return (0.5 + 0.1 * u).clamp(*bounds)
        lo, hi = bounds
        return lo + (hi - lo) * u

    def _signs(self, model, noise, targets):
        import torch

        out = []
        for i in range(0, len(noise), self.options.batch_size):
            xb = noise[i:i + self.options.batch_size].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(
                model(xb), targets[i:i + self.options.batch_size], reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            out.append(-grad.sign())
        return torch.cat(out)

    def _iterate(self, model, start, targets, eps, bounds):
        adv = start.clone()
        for _ in range(self.options.steps):
            adv = adv + self.options.step_size * self._signs(model, adv, targets)
            adv = (start + (adv - start).clamp(-eps, eps)).clamp(*bounds)
        return adv

    def _readout(self, model, adversarials) -> dict:
        """Confidence and margin of ``model`` at ``softmax(logits * readout_temperature)``
        per eps and input, measured by the host's own :func:`robench.evaluation.predict`."""
        import torch

        from robench.evaluation import predict

        scaled = _ScaledLogits(model, self.options.readout_temperature)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        confidence, margin = [], []
        for adv in adversarials:
            _, conf, marg = predict(scaled, adv, self.options.batch_size, device)
            confidence.append(conf)
            margin.append(marg)
        return {"readout_temperature": float(self.options.readout_temperature),
                "readout_confidence": torch.stack(confidence),
                "readout_margin": torch.stack(margin)}

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None) -> AttackResult:
        """Fooling images for every eps (see the class docstring)."""
        import math

        import torch

        from robench import attack_runtime as rt

        if not all(math.isfinite(float(b)) for b in bounds):
            raise ValueError(f"fooling_images draws noise within the data bounds, which must "
                             f"be finite; got {tuple(bounds)}")
        crafting = source_model if source_model is not None else model
        with rt.eval_mode(crafting):
            k = rt.num_classes(crafting, x)
            if targets is None:
                noise = self._noise(self.options.noise_samples, x.shape[1:], bounds, generator,
                                    x.device).repeat_interleave(k, dim=0)
                targets = torch.arange(k, device=x.device).repeat(self.options.noise_samples)
            else:
                targets = targets.to(x.device)
                noise = self._noise(len(targets), x.shape[1:], bounds, generator, x.device)
            if self.options.steps == 1:
                adversarials = _SingleStepSweep(noise, self._signs(crafting, noise, targets),
                                                epsilons, bounds)
            else:
                adversarials = [self._iterate(crafting, noise, targets, float(e), bounds)
                                for e in epsilons]
        with rt.eval_mode(model):
            details = self._readout(model, adversarials)
        return self.result(epsilons, adversarials=adversarials, inputs=noise.cpu(),
                           labels=torch.full((len(noise),), -1, dtype=torch.long),
                           targets=targets.cpu(), source="noise", details=details)
