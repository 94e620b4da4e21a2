"""A batch of real windows from a dataset, for model measurements (`pgti info/bench model`)."""
from __future__ import annotations

import numpy as np
import torch


def example_batch(info, *, batch_size: int, input_steps: int, output_steps: int, input_channels: int,
                  output_channels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of real windows from a dataset: `x [B, T_in, N, C_in]`, `y [B, T_out, N, C_out]`.

    Channels are the dataset's (z-scored over the slice read), then the time of day in [0, 1)
    from the timestamps, then zeros for any further ones. Window starts are random in the first
    `8 * batch_size` steps (one slice is read). A series too short for one window gives an error.
    """
    from pgti.data.format import read_signals
    from pgti.errors import UserError

    span = input_steps + output_steps
    length = min(info.num_steps, span + 8 * batch_size)
    if length < span:
        raise UserError(f"{info.path}: {info.num_steps} steps, fewer than one window of {span}")
    signals = read_signals(info, 0, length)  # [t, N, C]
    signals = (signals - signals.mean(axis=(0, 1))) / (signals.std(axis=(0, 1)) + 1e-6)
    day = ((info.timestamps[:length] % 86400) / 86400.0).astype(np.float32)
    time_of_day = np.broadcast_to(day[:, None, None], (length, info.num_nodes, 1))
    width = max(input_channels, output_channels)
    features = np.concatenate([signals, time_of_day], axis=2)[:, :, :width]
    if features.shape[2] < width:
        pad = np.zeros((length, info.num_nodes, width - features.shape[2]), dtype=np.float32)
        features = np.concatenate([features, pad], axis=2)
    starts = np.random.default_rng(seed).integers(0, length - span + 1, batch_size)
    offsets = starts[:, None] + np.arange(span)
    windows = torch.from_numpy(np.ascontiguousarray(features[offsets]))  # [B, span, N, width]
    return (windows[:, :input_steps, :, :input_channels].contiguous(),
            windows[:, input_steps:, :, :output_channels].contiguous())
