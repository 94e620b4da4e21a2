"""SparseMatrix: products and gradients against dense, copies, devices, stacking."""
import copy
import pickle

import torch

from pgti.models.sparse import SparseMatrix, SupportSet, block_diag, scaled, stack_rows


def random_sparse(rows=6, cols=5, nnz=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    r, c = torch.randint(0, rows, (nnz,), generator=g), torch.randint(0, cols, (nnz,), generator=g)
    v = torch.randn(nnz, generator=g, dtype=torch.float64)
    dense = torch.zeros(rows, cols, dtype=torch.float64).index_put_((r, c), v, accumulate=True)
    return SparseMatrix.from_coo(r, c, v, (rows, cols)), dense


def test_matmul_and_gradient_match_dense():
    a, dense = random_sparse()
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(a.matmul(x), dense @ x)
    assert torch.autograd.gradcheck(a.matmul, (x,))
    torch.testing.assert_close(a.to_dense(), dense)


def test_deepcopy_pickle_and_dtype_conversion():
    a, dense = random_sparse()
    for b in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        torch.testing.assert_close(b.to_dense(), dense)
    single = a.to(dtype=torch.float32)
    assert single.dtype == torch.float32 and single.parts["crow"].dtype == torch.int64


def test_stack_rows_block_diag_and_scaled():
    a, da = random_sparse(4, 4, 6, seed=1)
    b, db = random_sparse(4, 4, 7, seed=2)
    torch.testing.assert_close(stack_rows([a, b]).to_dense(), torch.cat([da, db]))
    torch.testing.assert_close(block_diag([a, b]).to_dense(), torch.block_diag(da, db))
    torch.testing.assert_close(scaled(a, 2.0).csr_transposed().to_dense(), 2 * da.T)


def test_support_set_follows_module_conversions_but_not_state_dict():
    a, _ = random_sparse()
    holder = torch.nn.Module()
    holder.supports = SupportSet([a.to(dtype=torch.float32)])
    holder.double()
    assert holder.supports[0].dtype == torch.float64
    assert holder.state_dict() == {} and list(holder.buffers()) == []
    copy.deepcopy(holder)
