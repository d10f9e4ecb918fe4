"""scikit-learn's bundled handwritten digits: 1,797 8x8 images, no download needed."""

from __future__ import annotations

import dataclasses

from robench import DataInfo, Dataset, LoadedData


@dataclasses.dataclass(frozen=True)
class DigitsOptions:
    test_fraction: float = dataclasses.field(
        default=0.25, metadata={"help": "fraction of the 1,797 images held out for testing"})
    split_seed: int = dataclasses.field(
        default=0, metadata={"help": "seed of the stratified train/test split"})

    def __post_init__(self):
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


class Digits(Dataset):
    """scikit-learn digits (8x8 grey images, 10 classes), scaled to [0, 1].

    The pixel values 0..16 are divided by 16; the train/test split is stratified and
    fixed by ``split_seed``. Source: UCI ML hand-written digits, shipped with scikit-learn.
    """

    name = "digits"
    Options = DigitsOptions

    def load(self, root):
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = bunch.images.astype("float32") / 16.0
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, bunch.target, test_size=self.options.test_fraction,
            random_state=self.options.split_seed, stratify=bunch.target)
        info = DataInfo(name=self.name, input_shape=(1, 8, 8), num_classes=10,
                        bounds=(0.0, 1.0), eps_scale=16,
                        class_names=tuple(str(c) for c in range(10)),
                        source="scikit-learn load_digits (UCI optical digits), bundled")

        def tensors(xs, ys):
            return torch.from_numpy(xs).unsqueeze(1), torch.from_numpy(ys).long()

        return LoadedData(info, *tensors(x_tr, y_tr), *tensors(x_te, y_te))
