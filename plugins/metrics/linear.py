"""Metrics of linear classifiers: boundary tilting (Tanay & Griffin 2016) and robust
features (Tsipras et al. 2019)."""

from __future__ import annotations

import dataclasses

from robench import Metric


class BoundaryTilting(Metric):
    """Boundary tilting angle and d_adv of binary linear models; weight RMS of any model.

    Tanay & Griffin (2016), sections "Adversarial Distance and Tilting Angle" and the LeNet
    weight-decay experiment.

    For a model whose logits are an affine function of its input (found by probing the
    model, so in-model normalisation and single-score wrappers count; one logit or two)
    on a two-class data set, on the training split: ``tilting_angle`` theta between the
    weight vector ``w`` (class 1 minus class 0) and the nearest-centroid direction
    ``z = j - i`` (class centroids), ``d_adv`` = 1/2 ||j - i|| cos(theta),
    ``d_adv_empirical`` (mean signed distance of the samples to the boundary, equal to
    ``d_adv`` for balanced classes), ``centroid_distance`` and ``weight_norm``. For every
    model, ``weight_rms`` (root mean square of all weight parameters with 2+ dimensions,
    as stored: a parametrised weight counts by its underlying parameter).
    """

    name = "boundary_tilting"
    higher_is_better = None

    def from_cell(self, cell):
        import pandas as pd

        from . import _weights

        rows = [{"metric": "weight_rms", "value": _weights.weight_rms(cell.model)}]
        linear = _weights.affine_map(cell.model, cell.data.x_train, cell.device)
        direction = _weights.binary_direction(*linear) if linear is not None else None
        if direction is not None and cell.data.info.num_classes == 2:
            rows += _weights.tilting(cell.data.x_train, cell.data.y_train, *direction)
        return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class RobustFeatureOptions:
    top_k: int = dataclasses.field(
        default=1, metadata={"help": "k of top_k_weight_share: the k features most "
                                     "correlated with the label"})
    per_feature: bool = dataclasses.field(
        default=True, metadata={"help": "emit one correlation and one weight row per feature"})

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


class RobustFeatures(Metric):
    """Feature-label correlation and the weight a linear model puts on each feature.

    Tsipras et al. (2019) section 2.3, Fig. 2b; Table 4's ||w||_1.

    On a two-class data set's training split: ``feature_correlation`` per feature
    (Pearson correlation with the label in {-1, +1}); for a binary linear model also
    ``feature_weight`` (class-1-minus-class-0 weight), ``weight_l1``,
    ``weight_correlation_alignment`` (Pearson correlation between weights and feature
    correlations) and ``top_k_weight_share`` (share of ||w||_1 on the ``top_k`` features
    most correlated with the label). Robust (adversarially trained) models concentrate
    their weight on the few strongly correlated features.
    """

    name = "robust_features"
    higher_is_better = None
    Options = RobustFeatureOptions

    def from_cell(self, cell):
        import pandas as pd

        from . import _weights

        if cell.data.info.num_classes != 2:
            return None
        corr = _weights.feature_correlations(cell.data.x_train, cell.data.y_train)
        linear = _weights.affine_map(cell.model, cell.data.x_train, cell.device)
        direction = _weights.binary_direction(*linear) if linear is not None else None
        w = direction[0].numpy() if direction is not None else None
        return pd.DataFrame(_weights.robust_feature_rows(
            corr, w, top_k=self.options.top_k, per_feature=self.options.per_feature))
