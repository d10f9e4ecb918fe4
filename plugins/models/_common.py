"""What every built-in model shares: in-model normalisation and user checkpoints.

:class:`CommonOptions` is the base of every model's options; :func:`finish` is called
by every ``build`` on the bare network. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CommonOptions:
    """Options every built-in model accepts."""

    mean: tuple[float, ...] = dataclasses.field(
        default=(), metadata={"help": "in-model normalisation (x - mean) / std, one value "
                                      "or one per channel; empty = none"})
    std: tuple[float, ...] = dataclasses.field(
        default=(), metadata={"help": "see mean; must be given together with it"})
    checkpoint: str = dataclasses.field(
        default="", metadata={"help": "path of a state_dict of the bare network (without "
                                      "normalisation) to load: a .safetensors file or a "
                                      "torch.save file read with "
                                      "torch.load(weights_only=True)"})

    def __post_init__(self):
        if bool(self.mean) != bool(self.std):
            raise ValueError("give both mean and std for in-model normalisation, or neither")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0, got {list(self.std)}")


def finish(net, options: CommonOptions, info):
    """Load ``options.checkpoint`` into ``net``, then wrap it in :class:`Normalized` when
    ``options.mean``/``std`` are set. Returns the module the host trains and attacks.

    The checkpoint is read by :func:`.imported.load_checkpoint`: a ``.safetensors`` file
    or a ``torch.save`` file read with ``torch.load(..., weights_only=True)`` (no code
    runs either way); a bare state_dict or a dict holding one under ``"state_dict"`` or
    ``"model_state_dict"``; a ``"module."`` prefix (DataParallel) is stripped. Loading
    is strict: a missing or unexpected key is an error naming the file.
    """
    if options.checkpoint:
        from .imported import load_checkpoint

        load_checkpoint(net, options.checkpoint)
    if options.mean:
        from ._nets import Normalized

        return Normalized(net, options.mean, options.std, info.input_shape)
    return net
