"""The radial networks: with folded constants (``folded_mlp``) and tabulated (``RadialTable``), against e3nn's
networks themselves, in float64."""
import copy

import numpy as np
import pytest
import torch
from conftest import random_cuzr, small_model

from equicalc import EquiCalc
from equicalc.graph import AtomicGraph
from equicalc.nn import compute_properties, is_fused
from equicalc.nn.nequip import freeze_radial_networks
from equicalc.nn.radial_table import RadialTable, _interpolate_torch, hermite_basis


def networks(model, r):
    """Every layer's radial weights from the networks, (P, sum of weight_numel)."""
    emb = model.radial(r)
    return torch.cat([layer.radial_net(emb) for layer in model.layers], dim=1)


@pytest.mark.parametrize("out_act", [False, True])
def test_folded_mlp_with_folded_constants_equals_the_e3nn_network(out_act):
    from e3nn.nn import FullyConnectedNet

    from equicalc.nn.mlp import folded_mlp

    torch.manual_seed(0)
    net = FullyConnectedNet([8, 16, 16, 12], torch.nn.functional.silu, out_act=out_act).double()
    x = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    a, b = net(x), folded_mlp(net, x)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-13)
    ga = torch.autograd.grad(a.pow(2).sum(), [x, *net.parameters()])
    gb = torch.autograd.grad(b.pow(2).sum(), [x, *net.parameters()])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


def test_silu_of_the_radial_networks_equals_pytorchs_to_the_third_derivative():
    from equicalc.nn.mlp import _SiLU

    x = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(_SiLU.apply, (x,))

    def derivatives(f, third=True):
        first, = torch.autograd.grad(f(x).pow(2).sum(), x, create_graph=True)
        second, = torch.autograd.grad(first.sin().sum(), x, create_graph=third)  # third=False: the numba kernel
        return [first, second] + ([torch.autograd.grad(second.pow(2).sum(), x)[0]] if third else [])

    for third in (True, False):
        for a, b in zip(derivatives(_SiLU.apply, third), derivatives(torch.nn.functional.silu, third)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hermite_basis_matches_values_slopes_and_curvatures_at_both_ends():
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    for k in range(6):
        b = hermite_basis(t)[k]
        d1 = torch.autograd.grad(b.sum(), t, create_graph=True)[0]
        d2 = torch.autograd.grad(d1.sum(), t)[0]
        side, order = divmod(k, 3)  # rows: value, slope, curvature at t = 0, then at t = 1
        derivatives = torch.stack([b.detach(), d1.detach(), d2])  # (order, end)
        expected = torch.zeros(3, 2, dtype=torch.float64)
        expected[order, side] = 1.0
        torch.testing.assert_close(derivatives, expected, rtol=0, atol=1e-12)


def test_table_equals_the_networks_and_vanishes_beyond_the_cutoff():
    model = small_model(num_layers=3, seed=3)
    table = RadialTable(model)
    r = torch.linspace(1.5, model.r_max, 4001, dtype=torch.float64)
    got = torch.cat(table(r), dim=1)
    ref = networks(model, r)
    assert [w.shape[1] for w in table(r)] == [layer.tp.weight_numel for layer in model.layers]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10 * ref.abs().max().item())
    beyond = torch.tensor([model.r_max, model.r_max + 1e-9, model.r_max + 2.0], dtype=torch.float64)
    assert torch.equal(torch.cat(table(beyond), dim=1), torch.zeros(3, got.shape[1], dtype=torch.float64))


def test_kernels_equal_the_pytorch_interpolation_and_its_derivative():
    model = small_model(num_layers=2, seed=4)
    table = RadialTable(model, spacing=0.01)
    r = (torch.rand(3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4.5 + 0.2)
    r = torch.cat([r, torch.arange(1, 400, dtype=torch.float64) * table.spacing])  # grid points themselves
    r.requires_grad_(True)
    kernel = torch.cat(table(r), dim=1)
    plain = torch.cat([_interpolate_torch(r, t, table.inv_h) for t in table.tables], dim=1)
    torch.testing.assert_close(kernel, plain, rtol=0, atol=1e-12)
    g = torch.randn(kernel.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (d_kernel,) = torch.autograd.grad((kernel * g).sum(), r)
    (d_plain,) = torch.autograd.grad((plain * g).sum(), r)
    torch.testing.assert_close(d_kernel, d_plain, rtol=1e-11, atol=1e-10)  # sums of ~1e3 terms
    # one layer's weights alone (the other layers' gradients are absent)
    (d_one,) = torch.autograd.grad(table(r)[1].sum(), r)
    (d_one_plain,) = torch.autograd.grad(_interpolate_torch(r, table.tables[1], table.inv_h).sum(), r)
    torch.testing.assert_close(d_one, d_one_plain, rtol=1e-11, atol=1e-10)
    # the slope is the derivative of the interpolant: central differences inside the intervals
    x = torch.tensor([1.2345, 2.71828, 3.3333], dtype=torch.float64)
    eps = 1e-6
    fd = torch.cat([_interpolate_torch(x + eps, t, table.inv_h) - _interpolate_torch(x - eps, t, table.inv_h)
                    for t in table.tables], dim=1)
    xg = x.clone().requires_grad_(True)
    w = torch.cat(table(xg), dim=1)
    (slope,) = torch.autograd.grad((w * g[:3]).sum(), xg)
    torch.testing.assert_close(slope, (fd * g[:3]).sum(1) / (2 * eps), rtol=1e-7, atol=1e-7)


def test_weights_and_slopes_are_continuous_across_grid_points():
    model = small_model(seed=5)
    table = RadialTable(model, spacing=0.02)
    nodes = torch.arange(1, int(model.r_max / table.spacing), dtype=torch.float64) * table.spacing
    below = (nodes - 1e-9).requires_grad_(True)
    above = (nodes + 1e-9).requires_grad_(True)
    a, b = torch.cat(table(below), dim=1), torch.cat(table(above), dim=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    g = torch.ones_like(a)
    (da,) = torch.autograd.grad((a * g).sum(), below)
    (db,) = torch.autograd.grad((b * g).sum(), above)
    torch.testing.assert_close(da, db, rtol=1e-6, atol=1e-6)


def test_frozen_model_equals_the_networks_keeps_its_state_dict_and_refuses_training():
    model = small_model(num_layers=3, seed=6)
    frozen = freeze_radial_networks(copy.deepcopy(model))
    assert is_fused(frozen) and not is_fused(model)
    assert freeze_radial_networks(frozen).radial_table is frozen.radial_table  # once
    before, after = model.state_dict(), frozen.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    graph = AtomicGraph.from_atoms(random_cuzr(seed=6)).build_neighbors(model.r_max)
    a, b = compute_properties(model, graph), compute_properties(frozen, graph)
    torch.testing.assert_close(b["energy"], a["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(b["forces"], a["forces"], rtol=0, atol=1e-10)
    torch.testing.assert_close(b["stress"], a["stress"], rtol=0, atol=1e-11)
    with pytest.raises(ValueError, match="inference only"):
        compute_properties(frozen, graph, training=True)
    allegro = small_model(architecture="allegro")
    assert freeze_radial_networks(allegro) is allegro and not is_fused(allegro)


def test_equicalc_tabulates_on_cpu_with_the_fused_kernels_and_forces_stay_exact():
    model = small_model(seed=7)
    atoms = random_cuzr(seed=7)
    fast = EquiCalc(model, fused_kernels=True)
    plain = EquiCalc(model, fused_kernels=False)
    assert fast.model.radial_table is not None and plain.model.radial_table is None
    a, b = fast.calculate_batch([atoms])[0], plain.calculate_batch([atoms])[0]
    assert abs(a["energy"] - b["energy"]) < 1e-10
    np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-10)
    # forces are the derivative of the tabulated energy: central differences
    atoms.calc = fast
    eps = 1e-5
    for i, k in [(0, 0), (5, 2), (17, 1)]:
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[i, k] += sign * eps
            moved.calc = fast
            shifted.append(moved.get_potential_energy())
        assert abs(-(shifted[0] - shifted[1]) / (2 * eps) - a["forces"][i, k]) < 1e-7


def test_bad_spacing_is_refused():
    with pytest.raises(ValueError, match="spacing"):
        RadialTable(small_model(), spacing=0.0)
