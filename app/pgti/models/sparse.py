"""A fixed sparse matrix for `A @ X` products with autograd, kept in CSR form.

Graph supports never change during training, so each one is converted to CSR once (with its
transpose, for the backward pass: `dL/dX = A^T @ dL/dY`) and then only multiplied. This avoids
COO coalescing and CSR transposition in the hot path. A `SparseMatrix` stores its parts as
plain dense tensors, so a model holding it can be deep-copied, pickled and moved between
devices (torch's CSR tensors support none of the first two).

Under `torch.compile` (`model.compile`) the product is the registered operator
`pgti::csr_matmul` over those dense parts: dynamo cannot trace sparse tensors and would break
the graph at every product (and fall back to eager after its recompile limit), so the operator
is opaque to it, with a shape-only fake and an autograd formula of its own. Eager code keeps
the autograd Function below, which reuses the cached CSR tensors (no construction per call).
"""
from __future__ import annotations

import warnings

import torch


def _csr_parts(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]):
    """(crow_indices, col_indices, values) of the CSR form; duplicate entries are summed."""
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        csr = coo.coalesce().to_sparse_csr()
    # copies: the accessors return views whose base is the sparse tensor, which dynamo rejects
    return csr.crow_indices().clone(), csr.col_indices().clone(), csr.values().clone()


class SparseMatrix:
    """A constant sparse `[rows, cols]` matrix `A`; `A.matmul(X)` is `A @ X` with autograd for X.

    Build it from coordinates with `SparseMatrix.from_coo(rows, cols, values, shape)`.
    """

    def __init__(self, parts: dict[str, torch.Tensor], shape: tuple[int, int]):
        self.parts = parts  # crow, col, val (A) and t_crow, t_col, t_val (A^T)
        self.shape = (int(shape[0]), int(shape[1]))
        self._csr: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_coo(cls, rows, cols, values, shape) -> "SparseMatrix":
        rows, cols = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
        values = torch.as_tensor(values)
        crow, col, val = _csr_parts(rows, cols, values, shape)
        t_crow, t_col, t_val = _csr_parts(cols, rows, values, (shape[1], shape[0]))
        parts = dict(crow=crow, col=col, val=val, t_crow=t_crow, t_col=t_col, t_val=t_val)
        return cls(parts, shape)

    # ---------------------------------------------------------------- views and conversion

    def csr(self) -> torch.Tensor:
        """`A` as a torch CSR tensor (cached)."""
        return self._tensors()[0]

    def csr_transposed(self) -> torch.Tensor:
        """`A^T` as a torch CSR tensor (cached)."""
        return self._tensors()[1]

    def _tensors(self):
        if self._csr is None:
            p = self.parts
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
                a = torch.sparse_csr_tensor(p["crow"], p["col"], p["val"], self.shape,
                                            check_invariants=False)
                a_t = torch.sparse_csr_tensor(p["t_crow"], p["t_col"], p["t_val"],
                                              (self.shape[1], self.shape[0]), check_invariants=False)
            self._csr = (a, a_t)
        return self._csr

    def coo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, cols, values) of the non-zeros, in row-major order."""
        p = self.parts
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=p["crow"].device), p["crow"].diff())
        return rows, p["col"], p["val"]

    def to_dense(self) -> torch.Tensor:
        """The dense `[rows, cols]` matrix (tests and small graphs only)."""
        return self.csr().to_dense()

    def apply(self, fn) -> "SparseMatrix":
        """A copy with `fn` applied to every part (what `nn.Module._apply` does to buffers)."""
        return SparseMatrix({k: fn(v) for k, v in self.parts.items()}, self.shape)

    def to(self, device=None, dtype=None) -> "SparseMatrix":
        """A copy on `device` with values of `dtype` (indices stay int64)."""
        return self.apply(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None))

    @property
    def nnz(self) -> int:
        return int(self.parts["val"].numel())

    @property
    def device(self) -> torch.device:
        return self.parts["val"].device

    @property
    def dtype(self) -> torch.dtype:
        return self.parts["val"].dtype

    def __getstate__(self):
        return {"parts": self.parts, "shape": self.shape}

    def __setstate__(self, state):
        self.__init__(state["parts"], state["shape"])

    def __repr__(self) -> str:
        return f"SparseMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, device={self.device})"

    # ---------------------------------------------------------------- the product

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """`A @ x` for dense `x [cols, F]` -> `[rows, F]`, differentiable in `x`."""
        if torch.compiler.is_compiling():
            p = self.parts
            return csr_product(p["crow"], p["col"], p["val"], p["t_crow"], p["t_col"], p["t_val"], x)
        return _SparseMatmul.apply(self, x)


def csr_matmul(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """CSR `a` times dense `x`. On CPU torch's native row-parallel kernel (`reduce="sum"`,
    the one PyG uses): it writes the result directly, where the MKL path zero-fills, copies and
    is 2-7x slower for wide `x` (measured for F = 1,536..8,448 columns). cuSPARSE on CUDA."""
    x = x.to(a.dtype).contiguous()  # under autocast x may be half: diffuse in the supports' dtype
    if x.device.type == "cpu":
        return torch.sparse.mm(a, x, "sum")
    return torch.sparse.mm(a, x)


class _SparseMatmul(torch.autograd.Function):
    """y = A @ x with the backward dL/dx = A^T @ dL/dy using the precomputed CSR transpose."""

    @staticmethod
    def forward(ctx, matrix: SparseMatrix, x: torch.Tensor) -> torch.Tensor:
        ctx.matrix = matrix
        return csr_matmul(matrix.csr(), x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if not ctx.needs_input_grad[1]:
            return None, None
        return None, csr_matmul(ctx.matrix.csr_transposed(), grad_output)


@torch.library.custom_op("pgti::csr_matmul", mutates_args=())
def csr_product(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, t_crow: torch.Tensor,
                t_col: torch.Tensor, t_val: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`A @ x` from the CSR parts of A and of its transpose (the backward's `A^T @ grad`): the
    operator that compiled code calls (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        a = torch.sparse_csr_tensor(crow, col, val, (crow.shape[0] - 1, x.shape[0]), check_invariants=False)
    return csr_matmul(a, x).contiguous()  # the layout the fake promises, whatever the library returns


@csr_product.register_fake
def _csr_product_shape(crow, col, val, t_crow, t_col, t_val, x):
    return x.new_empty((crow.shape[0] - 1, x.shape[1]), dtype=val.dtype)


def _csr_product_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:6])


def _csr_product_backward(ctx, grad):
    crow, col, val, t_crow, t_col, t_val = ctx.saved_tensors
    return None, None, None, None, None, None, csr_product(t_crow, t_col, t_val, crow, col, val, grad)


csr_product.register_autograd(_csr_product_backward, setup_context=_csr_product_context)


def scaled(matrix: SparseMatrix, factor: float) -> SparseMatrix:
    """`factor * A`."""
    if factor == 1.0:
        return matrix
    return SparseMatrix({k: v * factor if k in ("val", "t_val") else v for k, v in matrix.parts.items()},
                        matrix.shape)


def stack_rows(matrices: list[SparseMatrix]) -> SparseMatrix:
    """`[A_1; A_2; ...]`: one product gives every `A_s @ X`, stacked along rows."""
    rows, cols, vals, offset = [], [], [], 0
    for m in matrices:
        r, c, v = m.coo()
        rows.append(r + offset), cols.append(c), vals.append(v)
        offset += m.shape[0]
    return SparseMatrix.from_coo(torch.cat(rows), torch.cat(cols), torch.cat(vals),
                                 (offset, matrices[0].shape[1]))


def block_diag(matrices: list[SparseMatrix]) -> SparseMatrix:
    """`diag(A_1, A_2, ...)`: one product applies each `A_s` to its own row block of X."""
    rows, cols, vals, r0, c0 = [], [], [], 0, 0
    for m in matrices:
        r, c, v = m.coo()
        rows.append(r + r0), cols.append(c + c0), vals.append(v)
        r0, c0 = r0 + m.shape[0], c0 + m.shape[1]
    return SparseMatrix.from_coo(torch.cat(rows), torch.cat(cols), torch.cat(vals), (r0, c0))


class SupportSet(torch.nn.Module):
    """Sparse supports owned by a model: they follow `.to()` / `.cuda()` / `.double()` (via
    `_apply`) but are neither parameters nor buffers, so they stay out of the `state_dict`
    (a checkpoint holds weights only; the graph comes from the dataset) and out of DDP's
    buffer broadcast (which cannot send sparse tensors).
    """

    def __init__(self, matrices: list[SparseMatrix]):
        super().__init__()
        self.matrices = list(matrices)

    def _apply(self, fn, recurse=True):
        self.matrices = [m.apply(fn) for m in self.matrices]
        return super()._apply(fn, recurse)

    def __getitem__(self, i: int) -> SparseMatrix:
        return self.matrices[i]

    def __len__(self) -> int:
        return len(self.matrices)

    def extra_repr(self) -> str:
        return ", ".join(f"{tuple(m.shape)} nnz={m.nnz}" for m in self.matrices)
