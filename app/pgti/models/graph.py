"""Graph supports: the sparse matrices that models multiply node signals `X [N, F]` with.

Convention: `edge_index[:, e] = (source, target)` with weight `edge_weight[e]`, i.e. the
weighted adjacency `W[source, target] = w` (duplicates summed). Every support `A` returned here
is the `[N, N]` matrix applied as `A @ X`, so a signal moves from sources to targets. All are
`SparseMatrix` (CSR), never dense N x N.

- `random_walk_supports`: DCRNN's "dual_random_walk" pair. The paper writes the transition
  matrices `D_O^-1 W` (forward) and `D_I^-1 W^T` (reverse); the reference implementation
  multiplies signals with their transposes, `(D_O^-1 W)^T` and `(D_I^-1 W^T)^T`, which is what
  we return: `[(D_O^-1 W)^T X]_i = sum_j W_ji / d_out(j) * X_j`.
- `pgt_supports`: the pair PyTorch Geometric Temporal's `DConv` / `updatedDConv` propagates
  with, reproduced exactly (see its docstring).
- `gcn_support`: GCN's renormalized adjacency `D~^-1/2 (W + I) D~^-1/2` (torch_geometric's
  `gcn_norm`), used by T-GCN / A3T-GCN.
- `sym_normalized_laplacian`: `I - D^-1/2 W D^-1/2` (torch_geometric's `get_laplacian`).
"""
from __future__ import annotations

import numpy as np
import torch

from pgti.models.sparse import SparseMatrix


def edge_tensors(edge_index, edge_weight, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated `(edge_index int64 [2, E], edge_weight float32 [E])` from arrays or tensors.

    `edge_weight=None` means every edge has weight 1.
    """
    index = torch.as_tensor(np.asarray(edge_index) if not torch.is_tensor(edge_index) else edge_index)
    index = index.to(torch.long).cpu()
    if index.dim() != 2 or index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(index.shape)}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_nodes):
        raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
    if edge_weight is None:
        weight = torch.ones(index.shape[1])
    else:
        weight = torch.as_tensor(np.asarray(edge_weight) if not torch.is_tensor(edge_weight) else edge_weight)
        weight = weight.to(torch.float32).cpu().reshape(-1)
    if weight.shape[0] != index.shape[1]:
        raise ValueError(f"edge_weight has {weight.shape[0]} entries for {index.shape[1]} edges")
    if not torch.isfinite(weight).all():
        raise ValueError("edge_weight has non-finite values")
    return index, weight


def _inverse(degree: torch.Tensor) -> torch.Tensor:
    """1/degree with 0 where the degree is 0 (isolated nodes diffuse nothing, as in DCRNN)."""
    inv = degree.reciprocal()
    inv[~torch.isfinite(inv)] = 0.0
    return inv


def degrees(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int):
    """(weighted out-degree, weighted in-degree), each `[N]`."""
    source, target = edge_index
    out_degree = torch.zeros(num_nodes, dtype=edge_weight.dtype).index_add_(0, source, edge_weight)
    in_degree = torch.zeros(num_nodes, dtype=edge_weight.dtype).index_add_(0, target, edge_weight)
    return out_degree, in_degree


def random_walk_supports(edge_index, edge_weight, num_nodes: int) -> list[SparseMatrix]:
    """DCRNN's dual random walk `[(D_O^-1 W)^T, (D_I^-1 W^T)^T]`, each `[N, N]`, applied as `A @ X`.

    Forward: `A_f[t, s] = w_st / d_out(s)` (mass leaves a node along its out-edges).
    Reverse: `A_r[s, t] = w_st / d_in(t)` (the same walk on the reversed graph).
    """
    edge_index, edge_weight = edge_tensors(edge_index, edge_weight, num_nodes)
    source, target = edge_index
    out_degree, in_degree = degrees(edge_index, edge_weight, num_nodes)
    shape = (num_nodes, num_nodes)
    forward = SparseMatrix.from_coo(target, source, edge_weight * _inverse(out_degree)[source], shape)
    reverse = SparseMatrix.from_coo(source, target, edge_weight * _inverse(in_degree)[target], shape)
    return [forward, reverse]


def pgt_supports(edge_index, edge_weight, num_nodes: int) -> list[SparseMatrix]:
    """The two matrices PyTorch Geometric Temporal's DCRNN `DConv` diffuses with, as `A @ X`.

    PGT's message passing (flow source -> target, `message = norm * x_j`) uses the edge
    weights only through the degrees:
    - forward, over `edge_index`: `norm_out[e] = 1 / d_out(source_e)`, so
      `A_f[target_e, source_e] += 1 / d_out(source_e)`;
    - reverse, over the reversed edges `(target, source)` sorted by `(target, source)`:
      the f-th sorted reversed edge gets `norm_in[f] = 1 / d_in(source_f)` computed for the
      f-th edge of the *original* order. Unless the original list is already sorted by
      (target, source), this pairs each reversed edge with another edge's normalization; we
      reproduce it as-is so that `dcrnn-pgt` computes what PGT computes.
    One deliberate difference: where PGT would divide by a zero in-degree (a source node
    without in-edges, giving inf/NaN), the factor is 0 here.
    """
    edge_index, edge_weight = edge_tensors(edge_index, edge_weight, num_nodes)
    source, target = edge_index
    out_degree, in_degree = degrees(edge_index, edge_weight, num_nodes)
    shape = (num_nodes, num_nodes)
    forward = SparseMatrix.from_coo(target, source, _inverse(out_degree)[source], shape)
    order = torch.argsort(target * num_nodes + source, stable=True)
    rev_source, rev_target = target[order], source[order]
    reverse = SparseMatrix.from_coo(rev_target, rev_source, _inverse(in_degree)[source], shape)
    return [forward, reverse]


def gcn_support(edge_index, edge_weight, num_nodes: int) -> SparseMatrix:
    """GCN's `D~^-1/2 (W + I) D~^-1/2` as `[N, N]`, applied as `A @ X` (torch_geometric `gcn_norm`).

    Degrees are in-degrees (torch_geometric's source -> target convention); for a symmetric
    graph this is the textbook renormalized adjacency of Kipf & Welling and T-GCN.
    """
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    edge_index, edge_weight = edge_tensors(edge_index, edge_weight, num_nodes)
    index, weight = gcn_norm(edge_index, edge_weight, num_nodes, improved=False, add_self_loops=True)
    return SparseMatrix.from_coo(index[1], index[0], weight, (num_nodes, num_nodes))


def sym_normalized_laplacian(edge_index, edge_weight, num_nodes: int) -> SparseMatrix:
    """`I - D^-1/2 W D^-1/2` as `[N, N]`, applied as `A @ X` (torch_geometric `get_laplacian`)."""
    from torch_geometric.utils import get_laplacian

    edge_index, edge_weight = edge_tensors(edge_index, edge_weight, num_nodes)
    index, weight = get_laplacian(edge_index, edge_weight, normalization="sym", num_nodes=num_nodes)
    return SparseMatrix.from_coo(index[1], index[0], weight, (num_nodes, num_nodes))
