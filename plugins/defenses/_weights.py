"""Weight transformations behind the spectral_norm and binarized defenses (private;
imports torch, so it is imported only inside the defenses' methods)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """Parametrisation multiplying a weight by a constant factor."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, w):
        return w * self.factor


def conv_transfer(weight, size):
    """The transfer matrices of a (cross-correlation) convolution kernel on a periodic
    ``size`` input, arranged ``(H, W, out, in)``: the blocks that diagonalise the
    circular convolution (Sedghi et al. 2019, Theorem 6), from the routine the
    ``singular_values`` metric measures with (:mod:`robench_plugins.operators`). The grid
    is at least the kernel's size, so the clipped kernel can be cropped back from it.
    """
    from ..operators import transfer_matrices

    kh, kw = weight.shape[-2:]
    return transfer_matrices(weight, (max(size[0], kh), max(size[1], kw)))


def conv_operator_norm(weight, size) -> float:
    """Largest singular value of the circular convolution with ``weight`` on ``size``."""
    return torch.linalg.svdvals(conv_transfer(weight, size)).max().item()


def clip_conv(weight, size, strength: float, exact: bool = True):
    """Sedghi et al. (2019)'s projection: clip every singular value of the
    convolution operator on a periodic ``size`` input to at most ``strength``, go back
    to the spatial domain and crop to the original kernel support.

    The crop can raise the operator norm slightly above ``strength``; with ``exact`` the
    kernel is then rescaled by ``strength / norm``. Returns the new kernel (same dtype).
    """
    kh, kw = weight.shape[-2:]
    transfer = conv_transfer(weight.double(), size)
    u, s, vh = torch.linalg.svd(transfer, full_matrices=False)
    clipped = u @ (s.clamp(max=strength).to(u.dtype)[..., None] * vh)
    full = torch.fft.ifft2(clipped.permute(2, 3, 0, 1), dim=(-2, -1)).real
    kernel = full[..., :kh, :kw]
    if exact:
        norm = conv_operator_norm(kernel, size)
        if norm > strength:
            kernel = kernel * (strength / norm)
    return kernel.to(weight.dtype)


def clip_matrix(weight, strength: float):
    """Clip the singular values of a weight matrix at ``strength`` (SVD)."""
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    return (u @ (s.clamp(max=strength)[:, None] * vh)).to(weight.dtype)


class SignSTE(nn.Module):
    """Parametrisation binarising a weight with a straight-through gradient.

    Forward: ``sign(w) * alpha`` with ``alpha = mean(|w|)`` (``scale = "mean"``, a
    constant for the gradient) or ``alpha = 1`` (``scale = "none"``). Backward: the
    identity, so the latent real-valued weight ``w`` accumulates the updates.
    """

    def __init__(self, scale: str):
        super().__init__()
        self.scale = scale

    def forward(self, w):
        alpha = w.detach().abs().mean() if self.scale == "mean" else 1.0
        binary = torch.sign(w.detach()) * alpha
        return w + (binary - w).detach()
