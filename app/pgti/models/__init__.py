"""pgti.models: spatiotemporal GNNs batched as sparse products, and their registry.

Every model maps `x [B, T_in, N, C_in]` to `[B, T_out, N, C_out]` with
`forward(x, y=None, *, global_step=None)`; build one by name with
`pgti.models.registry.build_model` ("dcrnn", "dcrnn-pgt", "a3tgcn", "gwnet").

  registry.py    names, papers, shapes, default hyper-parameters, `build_model`
  defaults.py    `TrainingDefaults`: optimizer / schedule / batch settings per model
  sparse.py      `SparseMatrix`: constant CSR matrix with a precomputed transpose for backward
  graph.py       supports from edge_index: random walks, PGT's pair, GCN normalization
  diffusion.py   batched diffusion terms over several supports (one product per step)
  dcgru.py       the DCGRU cell;  tgcn.py  the T-GCN cell
  dcrnn.py, dcrnn_pgt.py, a3tgcn.py, gwnet.py   the models
  measure.py, example.py, info.py, cli_args.py  `pgti info model` and measurements

Importing this package does not import torch.
"""
