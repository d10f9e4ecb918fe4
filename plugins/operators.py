"""Singular values of the linear operators of layers: one routine for defenses and metrics.

The ``spectral_norm`` defense clips and the ``singular_values`` metric measures the same
quantity, so both go through :func:`transfer_matrices` (convolutions) and
:func:`layer_singular_values` (any layer). Imports torch: import it inside methods.

Convolutions are block-diagonalised by the discrete Fourier transform when they are
circular (Sedghi, Gupta & Long (2019), The Singular Values of Convolutional Layers): a
stride-1 circular convolution on an input of size ``n`` has the singular values of the
``(out, in)`` matrices of its kernel's DFT at each of the ``prod(n)`` frequencies. A
strided one is the stride-1 convolution of the input's polyphase components (the
``s`` sub-grids ``x[s*j + p]``, a permutation of the input): its kernel splits into
``s`` phases per axis, stacked as input channels, on an input of size ``n / s``, so
the same DFT method is exact for it whenever ``s`` divides ``n``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DENSE_LIMIT = 1 << 22
"""Largest operator (inputs x outputs) whose singular values are taken from its dense
matrix, exactly, whatever its padding and stride (32 MiB in float64)."""

CHUNK_BYTES = 64 << 20
"""Most bytes of complex transfer matrices held at once by :func:`conv_singular_values`."""


def dense_kernel(weight: torch.Tensor, groups: int = 1, dilation: tuple[int, ...] = (1,)
                 ) -> torch.Tensor:
    """The ``(out, in, *k)`` kernel of a grouped and/or dilated convolution as an
    ordinary dense one: zeros between groups' channels and between dilated taps."""
    out_ch, in_per_group, *size = weight.shape
    dilation = tuple(dilation) * (len(size) // len(dilation)) if len(dilation) == 1 \
        else tuple(dilation)
    size_d = [(k - 1) * d + 1 for k, d in zip(size, dilation)]
    dense = weight.new_zeros(out_ch, in_per_group * groups, *size_d)
    out_per_group = out_ch // groups
    taps = tuple(slice(None, None, d) for d in dilation)
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        cols = slice(g * in_per_group, (g + 1) * in_per_group)
        dense[(rows, cols) + taps] = weight[rows]
    return dense


def polyphase_kernel(kernel: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """The stride-1 kernel acting on the polyphase components of the input: tap ``k =
    s*q + p`` of the strided kernel becomes tap ``q`` of input channel ``(c, p)``."""
    out_ch, in_ch, *size = kernel.shape
    padded = [math.ceil(k / s) * s for k, s in zip(size, stride)]
    kernel = F.pad(kernel, [p for k, full in zip(reversed(size), reversed(padded))
                            for p in (0, full - k)])
    split = [out_ch, in_ch] + [d for full, s in zip(padded, stride) for d in (full // s, s)]
    kernel = kernel.reshape(split)
    n = len(size)
    phases = [3 + 2 * i for i in range(n)]
    taps = [2 + 2 * i for i in range(n)]
    kernel = kernel.permute(0, 1, *phases, *taps)
    return kernel.reshape(out_ch, in_ch * math.prod(stride), *[f // s for f, s in
                                                                zip(padded, stride)])


def _wrap(kernel: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Fold taps beyond the input size back modulo it (a circular convolution on an
    input smaller than the kernel adds those taps together)."""
    for axis, n in enumerate(size, start=2):
        k = kernel.shape[axis]
        if k > n:
            reps = math.ceil(k / n)
            pad = [0, 0] * (kernel.dim() - axis - 1) + [0, reps * n - k]
            kernel = F.pad(kernel, pad)
            shape = kernel.shape[:axis] + (reps, n) + kernel.shape[axis + 1:]
            kernel = kernel.reshape(shape).sum(axis)
    return kernel


def transfer_matrices(kernel: torch.Tensor, size: tuple[int, ...],
                      last: range | None = None) -> torch.Tensor:
    """The ``(*size, out, in)`` DFT of a dense stride-1 kernel on a circular input of
    ``size``: the blocks that diagonalise the circular convolution (cross-correlation,
    as torch computes it). ``last`` keeps only those frequencies of the last axis
    (default: all), so that callers can walk a wide layer's transform in chunks."""
    wrapped = _wrap(kernel, size)
    dtype = torch.complex128 if wrapped.dtype == torch.float64 else torch.complex64
    head = wrapped.to(dtype)
    for axis, n in zip(range(2, wrapped.dim() - 1), size[:-1]):
        head = torch.fft.fft(head, n=n, dim=axis)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    taps = torch.arange(head.shape[-1], dtype=real, device=kernel.device)
    freqs = torch.arange(size[-1], dtype=real, device=kernel.device)
    if last is not None:
        freqs = freqs[last.start:last.stop]
    basis = torch.exp(-2j * math.pi * taps[:, None] * freqs[None, :] / size[-1]).to(dtype)
    spectrum = head @ basis  # the DFT of the last axis at the kept frequencies
    return spectrum.permute(*range(2, spectrum.dim()), 0, 1)


def conv_singular_values(weight: torch.Tensor, input_size: tuple[int, ...], *,
                         stride: tuple[int, ...] = (1,), groups: int = 1,
                         dilation: tuple[int, ...] = (1,), device=None) -> torch.Tensor:
    """Every singular value of the circular convolution of ``weight`` on ``input_size``.

    Stride-1 convolutions by the DFT method (:func:`transfer_matrices`, the routine the
    ``spectral_norm`` defense clips with); strided ones through their polyphase kernel
    (exact when each stride divides the input size along its axis; the caller checks).
    Computed in float64 on ``device`` (default: the weight's), in chunks of frequencies
    so that wide layers never hold the whole transform, returned on the CPU.
    """
    device = weight.device if device is None else device
    kernel = dense_kernel(weight.detach().to(device, torch.float64), groups, dilation)
    stride = tuple(stride) * (len(input_size) // len(stride)) if len(stride) == 1 \
        else tuple(stride)
    size = tuple(input_size)
    if any(s > 1 for s in stride):
        kernel = polyphase_kernel(kernel, stride)
        size = tuple(n // s for n, s in zip(size, stride))
    out_ch, in_ch = kernel.shape[:2]
    per_slice = out_ch * in_ch * math.prod(size[:-1]) * 16
    chunk = max(1, CHUNK_BYTES // per_slice)
    values = []
    for start in range(0, size[-1], chunk):
        blocks = transfer_matrices(kernel, size, range(start, min(start + chunk, size[-1])))
        values.append(torch.linalg.svdvals(blocks.reshape(-1, out_ch, in_ch)).flatten().cpu())
    return torch.cat(values)


def operator_matrix(module: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The dense ``(outputs, inputs)`` matrix of ``module``'s linear part on inputs of
    ``in_shape`` (no batch dimension): its response to every basis input, less its bias,
    in float64 on the CPU."""
    import copy

    layer = copy.deepcopy(module).cpu().double().eval()
    n = math.prod(in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        zero = layer(torch.zeros_like(basis[:1]))
        return (layer(basis) - zero).reshape(n, -1).T


def _conv_notes(module: nn.Module, size: tuple[int, ...]) -> list[str]:
    """Why the circular operator measured for ``module`` differs from the layer's own."""
    notes = []
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    no_padding = padding in ("valid", (0,) * len(size))
    if not no_padding and module.padding_mode != "circular":
        notes.append(f"{module.padding_mode} padding: values are those of the circular "
                     f"operator, an approximation of this layer's")
    if no_padding and any(k > 1 for k in module.kernel_size):
        notes.append("no padding: the layer's output is a subset of the circular "
                     "operator's, whose values bound it (interlacing)")
    return notes


def layer_singular_values(module: nn.Module, in_shape: tuple[int, ...], *,
                          dense_limit: int = DENSE_LIMIT) -> tuple[np.ndarray, str, str]:
    """Singular values of one layer's linear operator (descending), how they were
    measured and a caveat note.

    Methods: ``matrix`` (a Linear layer's weight), ``dense`` (the exact operator of a
    convolution with at most ``dense_limit`` entries, any padding and stride),
    ``fft`` (stride-1 circular operator) and ``polyphase fft`` (strided circular
    operator, every stride dividing the input size). A strided layer whose stride does
    not divide its input is measured as its stride-1 circular operator, whose largest
    singular value bounds the layer's.
    """
    if isinstance(module, nn.Linear):
        values = torch.linalg.svdvals(module.weight.detach().double().cpu())
        return np.sort(values.numpy())[::-1], "matrix", ""
    size = tuple(in_shape[1:])
    out_shape_numel = module.out_channels * math.prod(size)
    if math.prod(in_shape) * out_shape_numel <= dense_limit:
        values = torch.linalg.svdvals(operator_matrix(module, tuple(in_shape)))
        return np.sort(values.numpy())[::-1], "dense", ""
    stride = tuple(module.stride)
    divides = all(n % s == 0 for n, s in zip(size, stride))
    strided = any(s > 1 for s in stride)
    notes = _conv_notes(module, size)
    if strided and not divides:
        notes.append(f"stride {stride} does not divide the input {size}: values are the "
                     f"stride-1 circular operator's, whose largest bounds the layer's")
        stride = (1,) * len(size)
    values = conv_singular_values(module.weight, size, stride=stride, groups=module.groups,
                                  dilation=module.dilation)
    method = "polyphase fft" if strided and divides else "fft"
    return np.sort(values.numpy())[::-1], method, "; ".join(notes)
