"""Spectral normalisation in its two meanings: torch's reshaped-kernel ``spectral_norm``
and Wen et al.'s clipping of each layer's *operator* singular values (Sedghi et al.)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from robench import Defense


@dataclasses.dataclass(frozen=True)
class SpectralNormOptions:
    method: Literal["operator", "kernel"] = dataclasses.field(
        default="operator",
        metadata={"help": "operator: clip the singular values of each layer's linear map "
                          "(convolutions via FFT over the input size; Sedghi et al. 2019, "
                          "Wen et al. (2020)) after every epoch; kernel: torch's spectral_norm "
                          "parametrisation of the reshaped kernel, at every forward pass"})
    strength: float = dataclasses.field(
        default=1.0, metadata={"help": "c: the largest singular value allowed per layer "
                                       "(Wen et al. 2020, uses 1, 3, 5)"})
    layers: Literal["all", "conv", "linear"] = dataclasses.field(
        default="all", metadata={"help": "which layers: every Conv2d and Linear, or one kind"})
    exact: bool = dataclasses.field(
        default=True, metadata={"help": "operator: after Sedghi's clip-and-crop, rescale a "
                                        "kernel whose operator norm the crop pushed above "
                                        "c, so the bound holds exactly"})
    power_iterations: int = dataclasses.field(
        default=1, metadata={"help": "kernel: power iterations per forward pass"})

    def __post_init__(self):
        if self.strength <= 0:
            raise ValueError(f"strength must be > 0, got {self.strength}")
        if self.power_iterations < 1:
            raise ValueError(f"power_iterations must be >= 1, got {self.power_iterations}")


class SpectralNorm(Defense):
    """Bounds every layer's spectral norm by ``strength`` (c), in one of two meanings.

    ``method = "operator"`` (Wen et al. 2020, appendix D.3, after Sedghi et al. 2019): at the
    end of every epoch, each convolution's operator on its input size (recorded by one
    forward pass when the model is wrapped) has its singular values clipped to c via
    the FFT (``_weights.clip_conv``); each Linear layer's matrix has its singular
    values clipped by SVD. As in Sedghi et al., each convolution is treated as circular
    with stride 1 on its input size, while zero padding makes the bound approximate
    (the layer's exact norm is that of the DFT symbol over all frequencies, not only the
    input size's grid).

    A strided layer is clipped as its stride-1 operator, and that bounds it: the
    circular convolution with stride ``s`` computes the stride-1 outputs at every
    ``s``-th position only, so its matrix is a subset of the rows of the stride-1
    matrix ``C`` (it is ``S C`` with ``S`` a row selection, ``||S|| = 1``), and its
    largest singular value is at most ``C``'s, hence at most c. The bound can be loose:
    the strided layer's norm (which the ``singular_values`` metric measures exactly
    through the polyphase kernel) may end up below c.

    The transfer matrices come from :func:`robench_plugins.operators.transfer_matrices`,
    the routine the ``singular_values`` metric measures convolutions too large for a
    dense matrix with, so the defense clips the operator the metric reports.

    ``method = "kernel"``: ``torch.nn.utils.parametrizations.spectral_norm`` on every
    layer (Miyato et al. 2018: power iteration on the kernel reshaped to ``out x
    in*k*k``, which is *not* the operator norm), times c.
    """

    name = "spectral_norm"
    Options = SpectralNormOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.input_sizes: dict[str, tuple[int, int]] = {}

    def _layers(self, model):
        from torch import nn

        kinds = {"all": (nn.Conv2d, nn.Linear), "conv": (nn.Conv2d,),
                 "linear": (nn.Linear,)}[self.options.layers]
        return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]

    def wrap_model(self, model, ctx):
        import torch
        from torch import nn
        from torch.nn.utils import parametrize

        from ._weights import Scale

        layers = self._layers(model)
        if self.options.method == "kernel":
            from torch.nn.utils.parametrizations import spectral_norm

            for _, m in layers:
                spectral_norm(m, n_power_iterations=self.options.power_iterations)
                if self.options.strength != 1:
                    parametrize.register_parametrization(m, "weight",
                                                         Scale(self.options.strength))
            return model
        for name, m in layers:
            if parametrize.is_parametrized(m, "weight"):
                raise ValueError(f"spectral_norm (operator) cannot clip layer {name!r}: its "
                                 "weight is parametrised by another defense")
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.dilation != (1, 1)):
                raise ValueError(f"spectral_norm (operator) supports plain convolutions; "
                                 f"layer {name!r} has groups={m.groups}, dilation={m.dilation}")
        convs = {m: name for name, m in layers if isinstance(m, nn.Conv2d)}
        hooks = [m.register_forward_pre_hook(
            lambda mod, args: self.input_sizes.__setitem__(convs[mod], tuple(args[0].shape[-2:])))
            for m in convs]
        param = next(model.parameters())
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros((1, *ctx.info.input_shape), device=param.device))
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        return model

    def after_epoch(self, model, epoch, ctx):
        if self.options.method != "operator":
            return
        self.clip(model)

    def clip(self, model) -> None:
        """Clip every selected layer of ``model`` in place (the operator method)."""
        import torch
        from torch import nn

        from ._weights import clip_conv, clip_matrix

        c = self.options.strength
        with torch.no_grad():
            for name, m in self._layers(model):
                if isinstance(m, nn.Conv2d):
                    if name not in self.input_sizes:
                        raise RuntimeError(f"layer {name!r} was not seen by wrap_model")
                    m.weight.copy_(clip_conv(m.weight, self.input_sizes[name], c,
                                             self.options.exact))
                else:
                    m.weight.copy_(clip_matrix(m.weight, c))
