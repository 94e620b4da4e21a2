"""DCRNN: Diffusion Convolutional Recurrent Neural Network (Li, Yu, Shahabi, Liu; ICLR 2018).

Encoder-decoder of stacked DCGRU cells over the dual random walk supports; the decoder starts
from a GO symbol (zeros), feeds back its own predictions, and in training mode replaces them
by the ground truth with the inverse-sigmoid scheduled-sampling probability
`tau / (tau + exp(global_step / tau))` (tau = `cl_decay_steps`), one coin per decoder step for
the whole batch as in the reference implementation. A linear projection maps the top hidden
state to the output channels at every step.

Shapes: `x [B, T_in, N, C_in]` -> `[B, T_out, N, C_out]`; `y [B, T_out, N, >= C_out]` (only the
first C_out channels are used, in the same scale as the outputs).

Against the authors' TensorFlow code: the same cell, weight layout and initialization, except
that each support's diffusion starts from the input (their `_gconv` reuses the previous
support's last terms, see `diffusion.py`) and the projection has a bias (as in the PyTorch
port, DCRNN_PyTorch); with it the METR-LA configuration has the usual 372,353 parameters.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from pgti.models.dcgru import DCGRUCell, dcgru_step, input_part, input_parts
from pgti.models.defaults import TrainingDefaults
from pgti.models.diffusion import Diffusion
from pgti.models.graph import random_walk_supports

PAPER = "Li, Yu, Shahabi, Liu. Diffusion Convolutional Recurrent Neural Network: Data-Driven Traffic Forecasting. ICLR 2018"

TRAINING_DEFAULTS = TrainingDefaults(
    optimizer="adam", learning_rate=0.01, adam_eps=1e-3, weight_decay=0.0,
    lr_milestones=(20, 30, 40, 50), lr_decay=0.1, grad_clip_norm=5.0, batch_size=64,
    epochs=100, early_stop_patience=50, input_steps=12, output_steps=12, loss="masked_mae",
    source="DCRNN paper and reference configs dcrnn_la.yaml / dcrnn_bay.yaml",
)


def sampling_probability(global_step: int, cl_decay_steps: float) -> float:
    """Probability of feeding the ground truth: `tau / (tau + exp(step / tau))` (inverse sigmoid)."""
    exponent = global_step / cl_decay_steps
    if exponent > 700:  # exp overflows; the probability is 0 to double precision
        return 0.0
    return cl_decay_steps / (cl_decay_steps + math.exp(exponent))


class DCRNN(nn.Module):
    """DCRNN seq2seq model. `forward(x [B, T_in, N, C_in], y=None, *, global_step=None) -> [B, T_out, N, C_out]`.

    Args (beyond the common ones): hidden_size (rnn_units, 64), num_layers (2),
    max_diffusion_step (K, 2), use_curriculum_learning (True), cl_decay_steps (tau, 2000).
    With the METR-LA configuration (C_in=2, C_out=1) it has 372,353 parameters, as the paper's.
    """

    def __init__(self, *, num_nodes: int, input_channels: int, output_channels: int,
                 input_steps: int, output_steps: int, edge_index, edge_weight=None,
                 hidden_size: int = 64, num_layers: int = 2, max_diffusion_step: int = 2,
                 use_curriculum_learning: bool = True, cl_decay_steps: int = 2000):
        super().__init__()
        self.num_nodes, self.input_steps, self.output_steps = num_nodes, input_steps, output_steps
        self.input_channels, self.output_channels = input_channels, output_channels
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.use_curriculum_learning, self.cl_decay_steps = use_curriculum_learning, cl_decay_steps
        self.diffusion = Diffusion(random_walk_supports(edge_index, edge_weight, num_nodes), max_diffusion_step)
        terms = self.diffusion.num_terms
        self.encoder = nn.ModuleList(
            DCGRUCell(input_channels if i == 0 else hidden_size, hidden_size, terms) for i in range(num_layers))
        self.decoder = nn.ModuleList(
            DCGRUCell(output_channels if i == 0 else hidden_size, hidden_size, terms) for i in range(num_layers))
        self.projection = nn.Linear(hidden_size, output_channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                global_step: int | None = None) -> torch.Tensor:
        batch, _, nodes, _ = x.shape
        # Node-major steps [N, B, C]: every diffusion is one sparse product over the whole batch.
        sequence = list(x.permute(1, 2, 0, 3).unbind(0))
        states = []
        for cell in self.encoder:  # layer by layer: the same function as step by step
            weights = cell.weights()
            h = x.new_zeros(nodes, batch, self.hidden_size)
            outputs = []
            for x_part in input_parts(self.diffusion, sequence, weights):
                h = dcgru_step(self.diffusion, x_part, h, weights)
                outputs.append(h)
            states.append(h)
            sequence = outputs
        return self._decode(states, y, global_step).permute(2, 1, 0, 3)

    def _decode(self, states: list[torch.Tensor], y, global_step) -> torch.Tensor:
        """Decoder outputs `[N, T_out, B, C_out]` from the encoder's last states `[N, B, U]`."""
        nodes, batch, _ = states[0].shape
        threshold = self.teacher_forcing_probability(y, global_step)
        labels = y[..., : self.output_channels].permute(2, 1, 0, 3) if threshold is not None else None
        weights = [cell.weights() for cell in self.decoder]
        step_input = states[0].new_zeros(nodes, batch, self.output_channels)  # GO symbol
        outputs = []
        for t in range(self.output_steps):
            layer_input = step_input
            for i, _cell in enumerate(self.decoder):
                x_part = input_part(self.diffusion, layer_input, weights[i])
                states[i] = dcgru_step(self.diffusion, x_part, states[i], weights[i])
                layer_input = states[i]
            prediction = self.projection(layer_input)
            outputs.append(prediction)
            if threshold is None:
                step_input = prediction
            elif torch.compiler.is_compiling():  # a tensor condition: one graph, no host round trip
                truth = torch.rand((), device=prediction.device) < threshold
                step_input = torch.where(truth, labels[:, t], prediction)
            else:  # the coin on the CPU, compared in float64: no device synchronization
                step_input = labels[:, t] if bool(torch.rand(()) < threshold) else prediction
        return torch.stack(outputs, dim=1)

    @torch.compiler.disable
    def teacher_forcing_probability(self, y, global_step) -> torch.Tensor | None:
        """Scheduled sampling's probability of feeding the truth (a float64 0-d tensor), or None
        when it does not apply.

        It applies in training mode only, with targets and `use_curriculum_learning`; evaluation
        never sees the targets. Under `model.compile` it runs outside the graph and the graph
        gets a tensor: the Python arithmetic on the int global_step, traced, would guard on its
        value and compile again at every step.
        """
        if not (self.training and self.use_curriculum_learning and y is not None):
            return None
        if global_step is None:
            raise ValueError("DCRNN: training with targets y needs global_step (the number of "
                             "batches seen) for scheduled sampling; pass global_step=..., or y=None")
        return torch.tensor(sampling_probability(global_step, self.cl_decay_steps), dtype=torch.float64)
