"""The channel-wise tensor product against e3nn's own ``TensorProduct``, and the numba convolution kernels against both."""
import pytest
import torch
from e3nn import o3

from equicalc.nn import conv_kernels
from equicalc.nn.fused_cpu import FusedChannelwiseTensorProduct, fuse
from equicalc.nn.tensor_product import ChannelwiseTensorProduct

CASES = [(1, True), (2, True), (3, False)]


def irreps_for(l_max, parity, channels=4):
    ps = (1, -1) if parity else (1,)
    irreps = o3.Irreps([(channels, (l, p)) for l in range(l_max + 1) for p in ps])
    return irreps, o3.Irreps.spherical_harmonics(l_max, p=-1 if parity else 1)


def e3nn_reference(irreps, sh):
    """e3nn's ``TensorProduct`` with one "uvu" instruction per path of ``tp``, and a map of the weights.

    Built independently of our path list: every (input irrep, harmonic, output irrep) that the
    target allows, ordered like ours (input block, harmonic, l3); e3nn's "component" normalisation
    with unit path weights gives sqrt(2 l3 + 1) times the Wigner 3j symbol, as ours does.
    """
    target = {ir for _, ir in irreps}
    instructions, irreps_out = [], []
    for i, (mul, ir_in) in enumerate(irreps):
        for j, (_, ir_sh) in enumerate(sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in target:
                    instructions.append((i, j, len(irreps_out), "uvu", True))
                    irreps_out.append((mul, ir_out))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its Wigner 3j buffers are then exact
    try:
        return o3.TensorProduct(irreps, sh, o3.Irreps(irreps_out), instructions, irrep_normalization="component",
                                path_normalization="none", internal_weights=False, shared_weights=False)
    finally:
        torch.set_default_dtype(default)


def matching_order(tp, e3):
    """For each of our output blocks, the index of the same (input block, harmonic, output irrep) in e3nn's."""
    e3_keys = [(ins.i_in1, ins.i_in2, e3.irreps_out[ins.i_out].ir) for ins in e3.instructions]
    keys = []
    for unit, j, _, _, _, _, d3, _ in tp.paths:
        for i in tp.units[unit]:
            keys.append((i, j, o3.Irrep((d3 - 1) // 2, tp.irreps_in[i].ir.p * tp.irreps_sh[j].ir.p)))
    return [e3_keys.index(k) for k in keys]


@pytest.mark.parametrize("l_max, parity", CASES)
def test_equals_e3nn_uvu_tensor_product(l_max, parity):
    torch.manual_seed(0)
    irreps, sh = irreps_for(l_max, parity)
    tp = ChannelwiseTensorProduct(irreps, sh, irreps).double()
    e3 = e3nn_reference(irreps, sh)
    order = matching_order(tp, e3)
    assert sorted(order) == list(range(len(e3.instructions)))  # the same paths, no more, no fewer
    assert {p[2] for p in tp.paths} >= {"scale", "outer", "dot"}
    e = 30
    x = torch.randn(e, irreps.dim, dtype=torch.float64)
    y = torch.randn(e, sh.dim, dtype=torch.float64)
    # one weight per channel and e3nn path; our weights are per (unit, path): blocks of a unit are consecutive
    w_e3 = torch.randn(e, e3.weight_numel, dtype=torch.float64)
    w_blocks = w_e3.split([ins.path_shape[0] for ins in e3.instructions], dim=1)
    ours_w = torch.cat([w_blocks[k] for k in order], dim=1)
    out_blocks = e3(x, y, w_e3).split([mul * ir.dim for mul, ir in e3.irreps_out], dim=1)
    expected = torch.cat([out_blocks[k] for k in order], dim=1)
    torch.testing.assert_close(tp(x, y, ours_w), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("l_max, parity", CASES)
def test_convolve_is_gather_product_sum(l_max, parity):
    torch.manual_seed(1)
    irreps, sh = irreps_for(l_max, parity)
    tp = ChannelwiseTensorProduct(irreps, sh, irreps).double()
    n, e = 7, 40
    nodes = torch.randn(n, irreps.dim, dtype=torch.float64)
    y = torch.randn(e, sh.dim, dtype=torch.float64)
    w = torch.randn(e, tp.weight_numel, dtype=torch.float64)
    edge_index = torch.randint(0, n, (2, e))
    expected = torch.zeros(n, tp.irreps_out.dim, dtype=torch.float64).index_add_(
        0, edge_index[0], tp(nodes[edge_index[1]], y, w))
    torch.testing.assert_close(tp.convolve(nodes, y, w, edge_index), expected, rtol=1e-12, atol=1e-12)  # kernels
    tp.kernels = False
    torch.testing.assert_close(tp.convolve(nodes, y, w, edge_index), expected, rtol=1e-12, atol=1e-12)  # PyTorch
    fused = FusedChannelwiseTensorProduct(tp)
    torch.testing.assert_close(fused.convolve(nodes, y, w, edge_index), expected, rtol=1e-11, atol=1e-11)
    to_mu, from_mu = fused.take_layouts()  # from now on in the kernels' layout
    out = fused.convolve(nodes[:, to_mu], y, w, edge_index)
    torch.testing.assert_close(out[:, from_mu], expected, rtol=1e-11, atol=1e-11)


def _convolution_case(seed=2, n=5, e=14, pairs=8):
    torch.manual_seed(seed)
    irreps, sh = irreps_for(2, True, channels=2)
    tp = ChannelwiseTensorProduct(irreps, sh, irreps).double()
    x = torch.randn(n, irreps.dim, dtype=torch.float64, requires_grad=True)
    y = torch.randn(e, sh.dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(pairs, tp.weight_numel, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, n, (2, e))
    weight_index = torch.cat([torch.arange(pairs), torch.randint(0, pairs, (e - pairs,))])  # rows shared by edges
    return tp, (x, y, w), edge_index, weight_index


def test_convolution_kernels_pass_gradcheck_and_gradgradcheck():
    tp, inputs, edge_index, weight_index = _convolution_case()
    f = lambda a, b, c: conv_kernels.convolve(tp.plan, a, b, c, edge_index, weight_index)  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(f, inputs, eps=1e-6, atol=1e-8)


def test_convolution_kernels_equal_the_pytorch_path_to_third_order():
    """Forward, a force-like gradient, its loss gradient and one more derivative, on both paths (float64)."""
    tp, inputs, edge_index, weight_index = _convolution_case(seed=3)
    probe = torch.randn(inputs[0].shape[0], tp.irreps_out.dim, dtype=torch.float64)

    def derivatives(kernels):
        tp.kernels = kernels
        out = tp.convolve(*inputs, edge_index, weight_index)
        first = torch.autograd.grad((out * probe).sum(), inputs, create_graph=True)
        loss = sum((g ** 2).sum() for g in first)
        second = torch.autograd.grad(loss, inputs, create_graph=True)
        third = torch.autograd.grad(sum(g.sin().sum() for g in second), inputs)
        return [out, *first, *second, *third]

    for a, b in zip(derivatives(True), derivatives(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_second_derivatives_without_a_graph_sum_the_substitutions_in_one_pass(monkeypatch):
    """A backward pass that records nothing (a training step's loss gradient) runs the summed kernels: the same
    numbers as the PyTorch path, for every slot and for a part of them."""
    summed = []
    run_sum = conv_kernels._run_sum
    monkeypatch.setattr(conv_kernels, "_run_sum", lambda wanted, *rest: summed.append(wanted) or run_sum(wanted, *rest))
    tp, inputs, edge_index, weight_index = _convolution_case(seed=4)
    probe = torch.randn(inputs[0].shape[0], tp.irreps_out.dim, dtype=torch.float64)

    def second(kernels, wrt):
        tp.kernels = kernels
        out = tp.convolve(*inputs, edge_index, weight_index)
        first = torch.autograd.grad((out * probe).sum(), inputs, create_graph=True)
        loss = sum((g.sin() * (k + 1)).sum() for k, g in enumerate(first)) + (out ** 2).sum()
        return torch.autograd.grad(loss, wrt)

    for wrt in (inputs, inputs[2:], inputs[:2]):
        for a, b in zip(second(True, wrt), second(False, wrt)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert summed == [("x", "y", "w"), ("w",), ("x", "y")]


def test_fuse_is_explicit_and_refused_in_training():
    from conftest import random_cuzr, small_model

    from equicalc.graph import AtomicGraph
    from equicalc.nn import compute_properties, is_fused

    model = small_model()
    fused = fuse(model)
    assert is_fused(fused) and not is_fused(model)  # a copy: the original keeps the PyTorch path
    graph = AtomicGraph.from_atoms(random_cuzr()).build_neighbors(model.r_max)
    a = compute_properties(model, graph)
    b = compute_properties(fused, graph)
    torch.testing.assert_close(a["forces"], b["forces"], rtol=1e-10, atol=1e-11)
    with pytest.raises(ValueError, match="inference only"):
        compute_properties(fused, graph, training=True)
    allegro = small_model(architecture="allegro")
    assert not is_fused(fuse(allegro))  # nothing to fuse: unchanged


def assert_inference_copy(model, frozen, graph, atol):
    """``frozen`` (an inference-only form of ``model``): same state dict, same results, refused in training."""
    from equicalc.nn import compute_properties, is_fused

    assert is_fused(frozen) and not is_fused(model)
    before, after = model.state_dict(), frozen.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    reference, out = compute_properties(model, graph), compute_properties(frozen, graph)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(out[key], reference[key], rtol=0, atol=atol)
    with pytest.raises(ValueError, match="inference only"):
        compute_properties(frozen, graph, training=True)


def test_frozen_self_connections_equal_the_tensor_product_and_keep_the_state_dict():
    import copy

    from conftest import random_cuzr, small_model

    from equicalc.graph import AtomicGraph
    from equicalc.nn.nequip import SpeciesLinear, freeze_self_connections

    model = small_model(num_layers=3, species=["Cu", "Zr", "Al"])
    tp = model.layers[1].self_connection
    h = torch.randn(40, tp.irreps_in1.dim, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 3, (40,)), 3).to(torch.float64)
    torch.testing.assert_close(SpeciesLinear(tp, 3)(h, onehot), tp(h, onehot), rtol=0, atol=1e-12)
    frozen = freeze_self_connections(copy.deepcopy(model))
    assert all(isinstance(layer.self_connection, SpeciesLinear) for layer in frozen.layers)
    assert_inference_copy(model, frozen, AtomicGraph.from_atoms(random_cuzr()).build_neighbors(model.r_max), 1e-11)


def test_dense_linears_equal_e3nn_and_absorb_the_fused_layout():
    import copy

    from conftest import random_cuzr, small_model

    from equicalc.graph import AtomicGraph
    from equicalc.nn.nequip import DenseLinear, freeze_linears

    model = small_model(num_layers=3, l_max=2, seed=8)
    linear = model.layers[2].linear_2
    x = torch.randn(30, linear.irreps_in.dim, dtype=torch.float64)
    torch.testing.assert_close(DenseLinear(linear)(x), linear(x), rtol=0, atol=1e-12)
    graph = AtomicGraph.from_atoms(random_cuzr(seed=8)).build_neighbors(model.r_max)
    for frozen in (freeze_linears(copy.deepcopy(model)), freeze_linears(fuse(model))):
        assert all(isinstance(layer.linear_2, DenseLinear) for layer in frozen.layers)
        assert_inference_copy(model, frozen, graph, 1e-11)
    layouts = frozen.layers[1].tp.layouts  # taken by the fused layer: its linears carry the permutations
    assert layouts is not None and sorted(layouts[0].tolist()) == list(range(len(layouts[0])))


@pytest.mark.parametrize("dtype, atol", [("float64", 1e-12), ("float32", 2e-5)])
def test_lean_gates_equal_e3nn_gates_with_their_input_order_folded_in(dtype, atol):
    import copy

    from conftest import random_cuzr, small_model

    from equicalc.graph import AtomicGraph
    from equicalc.nn.nequip import LeanGate, freeze_gates

    model = small_model(num_layers=3, l_max=2, seed=9, dtype=dtype)
    gate = model.layers[2].gate
    lean = LeanGate(gate)
    x = torch.randn(25, gate.irreps_in.dim, dtype=getattr(torch, dtype))
    torch.testing.assert_close(lean(x[:, lean.order]), gate(x), rtol=0, atol=atol)
    graph = AtomicGraph.from_atoms(random_cuzr(seed=9)).build_neighbors(model.r_max)
    for frozen in (freeze_gates(copy.deepcopy(model)), freeze_gates(fuse(model))):
        assert all(isinstance(layer.gate, LeanGate) for layer in frozen.layers)
        assert_inference_copy(model, frozen, graph, atol * 10)


def test_training_gradients_are_the_same_on_the_kernels_and_on_pytorch_operations():
    """The loss gradient of a training step (energy, forces and stress in the loss) on both paths, float64."""
    from conftest import random_cuzr, small_model

    from equicalc.graph import AtomicGraph
    from equicalc.nn import compute_properties

    model = small_model()
    graph = AtomicGraph.from_atoms(random_cuzr()).build_neighbors(model.r_max)

    def loss_gradient(kernels):
        for module in model.modules():
            if isinstance(module, ChannelwiseTensorProduct):
                module.kernels = kernels
        out = compute_properties(model, graph, training=True)
        loss = out["energy"].sum() + (out["forces"] ** 2).sum() + (out["stress"] ** 2).sum()
        return [loss, *torch.autograd.grad(loss, list(model.parameters()))]

    for a, b in zip(loss_gradient(True), loss_gradient(False)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
