"""Per-layer singular values of a trained model's weight operators (Wen et al. 2020)."""

from __future__ import annotations

import dataclasses

from robench import Metric


@dataclasses.dataclass(frozen=True)
class SingularValuesOptions:
    max_values: int = dataclasses.field(
        default=512, metadata={"help": "most singular_value rows kept per layer (evenly "
                                       "spaced in rank); summaries use every value"})

    def __post_init__(self):
        if self.max_values < 2:
            raise ValueError(f"max_values must be >= 2, got {self.max_values}")


class SingularValues(Metric):
    """Per-layer singular values of each layer's operator, and spectral complexity.

    Wen et al. (2020) section 5.2.2, Fig. 5c/d; appendix B.2 and B.4.

    Linear layers: ``torch.linalg.svdvals`` of the weight. Convolutions (1-d and 2-d,
    grouped, dilated and strided included) are taken as the linear map they apply to
    their real input size, found by running one test input through the model. Small
    operators are measured exactly from their dense matrix (``method = "dense"``);
    larger ones by the FFT method of Sedghi, Gupta & Long (2019), exact for the
    *circular* convolution on that size (``"fft"``; ``"polyphase fft"`` for strided
    layers whose stride divides the input). The ``note`` of a layer says what an FFT
    measurement approximates (zero padding is not circular). The spectral_norm defense
    clips the same operators through the same routine (:mod:`robench_plugins.operators`).

    Rows per layer (``layer``, ``layer_index``, ``kind``, ``method``, ``input_shape``):
    ``sv_max``, ``sv_min``, ``sv_mean``, ``sv_std`` (population standard deviation),
    ``sv_count``, and ``singular_value`` rows by ``rank``; per model
    ``spectral_complexity`` (product of the layers' spectral norms, Definition 7) and
    ``spectral_complexity_log10``.
    """

    name = "singular_values"
    higher_is_better = None
    Options = SingularValuesOptions

    def from_cell(self, cell):
        from . import _tables, _weights

        x = cell.data.x_test[:1].to(cell.device)
        return _tables.or_none(_weights.singular_values(cell.model, x,
                                                        max_values=self.options.max_values))
