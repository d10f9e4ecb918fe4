"""Feature selection: standard training on the k input features most correlated with the
label (Tsipras et al. 2019, Fig. 2c)."""

from __future__ import annotations

import dataclasses

from robench import Defense


@dataclasses.dataclass(frozen=True)
class FeatureSelectionOptions:
    k: int = dataclasses.field(
        default=100, metadata={"help": "how many input features the model sees: those with "
                                       "the largest |Pearson correlation| with the label "
                                       "on the training split"})

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


class FeatureSelection(Defense):
    """Lets the model see only the ``k`` input features most correlated with the label.

    Tsipras, Santurkar, Engstrom, Turner & Madry (2019), Robustness May Be at Odds with
    Accuracy, section 2.3 and Fig. 2c ("an alternative path to robustness"): sort the
    features by decreasing correlation with the label and train with *standard* training
    on the most correlated ones only. Here the correlation is Pearson's, of each
    (flattened) input feature with the label in {-1, +1}, on the cell's training split,
    the same numbers as the ``robust_features`` metric's ``feature_correlation``;
    features are ranked by its absolute value (a strongly anti-correlated pixel is as
    robust as a correlated one), ties by feature index. The mask is computed once, when
    the model is wrapped, and kept as a buffer of the wrapped model (so a cached model
    keeps it).

    The other features are set to 0 inside the model, in front of its first layer: the
    paper does not say what a dropped feature is replaced by; for a linear model any
    constant is the same as removing the feature (the bias absorbs it), and 0 is removing
    it exactly. Attacks see the masked model, so a perturbation of a masked feature
    changes nothing and its gradient is exactly 0. Two-class data sets only.
    """

    name = "feature_selection"
    Options = FeatureSelectionOptions

    def wrap_model(self, model, ctx):
        import torch

        from ..metrics._weights import feature_correlations, most_correlated
        from ._feature_mask import FeatureMask

        if ctx.info.num_classes != 2:
            raise ValueError(f"{self.name}: the label correlation needs two classes; "
                             f"{ctx.info.name!r} has {ctx.info.num_classes}")
        if ctx.data is None:
            raise ValueError(f"{self.name}: the training context has no training data")
        x = ctx.data.x_train
        features = x[0].numel()
        if self.options.k > features:
            raise ValueError(f"{self.name}: k = {self.options.k} but the input has "
                             f"{features} features")
        keep = most_correlated(feature_correlations(x, ctx.data.y_train), self.options.k)
        mask = torch.zeros(features, dtype=x.dtype)
        mask[torch.as_tensor(keep)] = 1
        return FeatureMask(model, mask.reshape(x.shape[1:]))
