"""The high-confidence targeted attack of Tanay & Griffin (2016), "A Boundary Tilting
Perspective on the Phenomenon of Adversarial Examples" (section "Example: LeNet on MNIST",
footnote 10).

Written by hand: no library calibrates the softmax temperature before ascending.
"""

from __future__ import annotations

import dataclasses

from robench import Attack, AttackProperties, AttackResult, MinimalAttack, ThreatModel

TARGET_CONFIDENCE = 0.95
"""The paper's confidence: the calibrated median top-class score and the stopping level."""

LOG_T_LIMIT = 700.0
"""The calibration's bracket on log t stops widening once past +-700 (t near the ends of
the float64 range)."""

PAPER_STEP = 1 / 255
"""The paper's step, 1.0 on the 0..255 pixel scale, in the units of [0, 1] data."""


@dataclasses.dataclass(frozen=True)
class HighConfidenceOptions:
    """Options of :class:`HighConfidence`."""

    confidence: float = dataclasses.field(
        default=TARGET_CONFIDENCE,
        metadata={"help": "calibration level (median top-class score over the attacked "
                          "inputs) and stopping level of p_target"})
    step: float = dataclasses.field(
        default=PAPER_STEP,
        metadata={"help": "L2 length of each step, in the data's units (the paper: 1.0 on "
                          "the 0..255 scale, i.e. 1/255 on [0, 1] data)"})
    max_steps: int = dataclasses.field(
        default=2000, metadata={"help": "safety limit: inputs still below the confidence "
                                        "after this many steps count as not found"})

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not self.step > 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")


def calibrate_temperature(logits, confidence: float = TARGET_CONFIDENCE) -> float:
    """The softmax temperature t at which the median over ``logits`` (rows = inputs) of
    the top-class probability ``max softmax(z / t)`` equals ``confidence``.

    The top-class probability falls monotonically from 1 (t -> 0) to 1/k (t -> inf), so
    the root in log t is unique; it is found with scipy's Brent solver on a bracket
    widened until it holds the root. Raises ``ValueError`` when ``confidence`` is not in
    (1/k, 1) or no temperature reaches it (the median input's top logits tie).
    """
    import numpy as np
    from scipy.optimize import brentq
    from scipy.special import softmax

    z = np.asarray(logits, dtype="float64")
    if z.ndim != 2 or z.shape[1] < 2 or not len(z):
        raise ValueError(f"logits must be (inputs, classes >= 2), got shape {z.shape}")
    k = z.shape[1]
    if not 1 / k < confidence < 1:
        raise ValueError(f"confidence must be in (1/{k}, 1), got {confidence}")
    z = z - z.max(axis=1, keepdims=True)  # top logit 0: z / t stays finite or -inf

    def excess(log_t: float) -> float:
        with np.errstate(over="ignore"):  # z / t -> -inf at tiny t: probability 0
            scaled = z / np.exp(log_t)
        return float(np.median(softmax(scaled, axis=1).max(axis=1))) - confidence

    lo, hi = -1.0, 1.0
    while excess(lo) < 0 and lo > -LOG_T_LIMIT:
        lo *= 3
    while excess(hi) > 0 and hi < LOG_T_LIMIT:
        hi *= 3
    if excess(lo) < 0 or excess(hi) > 0:
        raise ValueError(f"no temperature in [e^{lo:g}, e^{hi:g}] gives a median top-class "
                         f"score of {confidence} (ties among the median inputs' top logits?)")
    return float(np.exp(brentq(excess, lo, hi, xtol=1e-12, rtol=1e-12)))


def target_probability(model, x, targets, temperature: float):
    """``p_target(x)`` of ``model`` at softmax temperature ``temperature`` (no gradient)."""
    import torch

    with torch.no_grad():
        return torch.softmax(model(x) / temperature, dim=1).gather(1, targets[:, None])[:, 0]


def ascent_step(model, x, targets, *, temperature: float, step: float, bounds):
    """One update of the paper's rule per input: ``clip(x + step * g / ||g||_2)``, with g
    the gradient of ``p_target`` at ``temperature`` and the clip to ``bounds``.

    g is computed as the gradient of ``log p_target``, ``g / p_target``: the same
    direction, without the underflow of ``p_target`` far from the target. An input with a
    zero gradient does not move.
    """
    import torch

    x = x.detach().requires_grad_(True)
    log_p = torch.log_softmax(model(x) / temperature, dim=1).gather(1, targets[:, None])
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    norm = grad.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    direction = torch.where(norm > 0, grad / norm.clamp_min(torch.finfo(grad.dtype).tiny),
                            torch.zeros_like(grad))
    return (x.detach() + step * direction).clamp(*bounds)


class _Ascent(MinimalAttack):
    """The search of :class:`HighConfidence` at a fixed, already calibrated temperature."""

    name = "high_confidence"
    library = "robench"
    threat_model = ThreatModel.L2
    supports_targets = True
    Options = HighConfidenceOptions

    def __init__(self, options: HighConfidenceOptions, temperature: float):
        super().__init__(options)
        self.temperature = temperature
        self.reached = 0

    def search(self, model, x, y, *, bounds, targets=None, generator=None):
        """Ascend ``p_target`` from ``x`` until it reaches the confidence; inputs that do
        not reach it within ``max_steps`` are returned unchanged (not found)."""
        import torch

        if targets is None:
            raise ValueError("high_confidence is a targeted attack: set [[attacks]] targets "
                             "(the paper's cyclic permutation: targets = \"cyclic\")")
        o = self.options
        adv, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(o.max_steps + 1):
            done |= target_probability(model, adv, targets, self.temperature) >= o.confidence
            todo = (~done).nonzero()[:, 0]
            if not len(todo):
                break
            adv[todo] = ascent_step(model, adv[todo], targets[todo],
                                    temperature=self.temperature, step=o.step, bounds=bounds)
        self.reached += int(done.sum())
        return torch.where(done.view(-1, *([1] * (x.dim() - 1))), adv, x)


class HighConfidence(Attack):
    """High-confidence targeted L2 attack (Tanay & Griffin 2016, footnote 10).

    1. *Calibration*: the softmax temperature t of the attacked (crafting) model is set
       so that the median top-class probability over the attacked inputs, clean, equals
       ``confidence`` (0.95; :func:`calibrate_temperature`). The paper calibrates on
       its whole test set; here it is the inputs the experiment attacks (``samples``).
    2. *Ascent*: for target l, ``x' <- clip(x' + step * grad p_l(x') / ||grad p_l(x')||)``
       (:func:`ascent_step`) until ``p_l(x') >= confidence`` at temperature t, at most
       ``max_steps`` steps. The step, 1.0 on the paper's 0..255 scale, is ``1/255`` on
       [0, 1] data.
    3. The result per input is the L2 norm of the perturbation, measured by the host; a
       minimal attack's thresholding turns it into robust accuracy at every budget.

    Use it with ``targets = "cyclic"`` (l = y + 1 mod k, the paper's 0 -> 1, ..., 9 -> 0).
    The host counts a candidate as adversarial when the prediction is the target; the
    paper's stopping rule p_l >= 0.95 is stricter (above 1/2 it implies that the target
    is the prediction), so every candidate the search returns passes the host's check,
    and an input that does not reach the confidence within ``max_steps`` is returned
    unchanged and counts as not found even if its prediction reached the target.
    ``details["temperature"]`` records t and ``details["reached"]`` how many inputs
    reached the confidence.
    """

    name = "high_confidence"
    library = "robench"
    sweeps_itself = True  # calibrates on every attacked input, then one minimal search
    Options = HighConfidenceOptions
    threat_model = ThreatModel.L2
    supports_targets = True
    properties = AttackProperties(starts_from_input=True, deterministic=True,
                                  monotone=True, bounded=True)

    def run(self, model, x, y, epsilons, *, bounds, targets=None, source_model=None,
            generator=None) -> AttackResult:
        """Calibrate the temperature on the crafting model, then search (see above)."""
        import torch

        from robench import attack_runtime as rt

        self.check_inputs(x, targets, bounds)
        crafting = source_model if source_model is not None else model
        with rt.eval_mode(crafting), torch.no_grad():
            logits = crafting(x)
        temperature = calibrate_temperature(logits.cpu().numpy(), self.options.confidence)
        ascent = _Ascent(self.options, temperature)
        result = ascent.run(model, x, y, epsilons, bounds=bounds, targets=targets,
                            source_model=source_model, generator=generator)
        result.details.update(temperature=temperature, confidence=self.options.confidence,
                              reached=ascent.reached)
        return result
