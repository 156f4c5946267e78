"""The channel-wise tensor product against a direct Wigner-3j contraction."""
import torch
from e3nn import o3

from equicalc.nn.tensor_product import ChannelwiseTensorProduct


def reference(tp, x, y, w):
    """Each path as an explicit einsum with its (scaled) Wigner 3j tensor."""
    n = x.shape[0]
    xs = x.split(tp.unit_sizes, dim=1)
    ys = y.split([ir.dim for _, ir in tp.irreps_sh], dim=1)
    ws = w.split([p[4] for p in tp.paths], dim=1)
    outs = []
    for (unit, j, kind, const, channels, d1, d3, name), wp in zip(tp.paths, ws):
        l1, l2, l3 = (d1 - 1) // 2, tp.irreps_sh[j][1].l, (d3 - 1) // 2
        cg = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * (2 * l3 + 1) ** 0.5
        xu = xs[unit].reshape(n, channels, d1)
        outs.append(torch.einsum("eui,ej,ijk,eu->euk", xu, ys[j], cg, wp).reshape(n, -1))
    return torch.cat(outs, dim=1)


def test_every_path_kind_equals_the_3j_contraction():
    torch.manual_seed(0)
    for l_max, parity in ((1, True), (2, True), (3, False)):
        ps = (1, -1) if parity else (1,)
        irreps = o3.Irreps([(4, (l, p)) for l in range(l_max + 1) for p in ps])
        sh = o3.Irreps.spherical_harmonics(l_max, p=-1 if parity else 1)
        tp = ChannelwiseTensorProduct(irreps, sh, irreps).double()
        kinds = {p[2] for p in tp.paths}
        assert {"scale", "outer", "dot"} <= kinds
        e, n = 40, 7
        x = torch.randn(e, irreps.dim, dtype=torch.float64)
        y = torch.randn(e, sh.dim, dtype=torch.float64)
        w = torch.randn(e, tp.weight_numel, dtype=torch.float64)
        torch.testing.assert_close(tp(x, y, w), reference(tp, x, y, w), rtol=1e-12, atol=1e-12)
        # convolve = gather, product, sum onto centres
        nodes = torch.randn(n, irreps.dim, dtype=torch.float64)
        edge_index = torch.randint(0, n, (2, e))
        expected = torch.zeros(n, tp.irreps_out.dim, dtype=torch.float64).index_add_(
            0, edge_index[0], reference(tp, nodes[edge_index[1]], y, w))
        torch.testing.assert_close(tp.convolve(nodes, y, w, edge_index), expected, rtol=1e-12, atol=1e-12)
