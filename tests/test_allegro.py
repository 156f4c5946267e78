"""Allegro's layers in closed form (products per irrep block, the linear map as one matrix product per irrep,
the networks with folded constants) against the same model evaluated through e3nn's own modules, in float64."""
import pytest
import torch
from conftest import random_cuzr, small_model
from e3nn import o3

from equicalc.graph import AtomicGraph
from equicalc.nn.forces import compute_properties
from equicalc.nn.radial import polynomial_envelope


def e3nn_flat(t, l_max):
    """(E, (l_max+1)^2, C) -> e3nn's flat layout of ``C x l`` blocks (E, dim)."""
    return torch.cat([t[:, l * l:(l + 1) ** 2].transpose(1, 2).reshape(len(t), -1) for l in range(l_max + 1)], 1)


def env_weights(module, x, sh, l_max):
    """The environment weights as e3nn's layout defines them: row ``c (l_max+1) + l`` weighs every m of l."""
    w = module.linear(x).view(len(x), module.channels, l_max + 1)
    l_of_m = torch.tensor([l for l in range(l_max + 1) for _ in range(2 * l + 1)])
    return e3nn_flat((w[:, :, l_of_m] * sh.unsqueeze(1)).transpose(1, 2), l_max)


def reference_energies(model, numbers, edge_index, vectors):
    """Per-atom energies from the model's weights through e3nn's ``FullyConnectedNet``, ``TensorProduct``
    and ``Linear`` on e3nn's flat layout, plus the model's ZBL term."""
    spec, n = model.spec, len(numbers)
    types = model.scale_shift.types(numbers)
    centre, neighbour = edge_index
    r = vectors.norm(dim=1)
    env = polynomial_envelope(r / model.r_max, model.poly_p)
    onehot = torch.nn.functional.one_hot(types, len(model.species)).to(vectors.dtype)
    x = model.two_body(torch.cat([onehot[centre], onehot[neighbour], model.basis(r)], 1)) * env.unsqueeze(-1)
    sh = model.spherical_harmonics(vectors)
    v = env_weights(model.initial_weights, x, sh, spec.l_max)
    for layer in model.layers:
        w_sh = env_weights(layer.env_weights, x, sh, spec.l_max)
        gamma = torch.zeros(n, w_sh.shape[1], dtype=w_sh.dtype).index_add_(0, centre, w_sh)
        prod = layer.tp(v, (gamma * layer.inv_sqrt_neighbors)[centre])
        mask = torch.cat([torch.full((mul * ir.dim,), ir == o3.Irrep("0e")) for mul, ir in layer.tp.irreps_out])
        x = (x + layer.mlp(torch.cat([x, prod[:, mask]], 1)) * env.unsqueeze(-1)) * 2 ** -0.5
        v = layer.linear(prod)
    e = torch.zeros(n, dtype=x.dtype).index_add_(0, centre, model.readout(x).squeeze(-1) * env)
    return model.with_repulsion(model.scale_shift(e, types), types, edge_index, r)


@pytest.mark.parametrize("l_max,parity,full", [(1, True, True), (1, True, False), (2, True, True), (2, False, True)])
def test_closed_form_layers_equal_e3nns_modules(l_max, parity, full):
    model = small_model(architecture="allegro", l_max=l_max, parity=parity, full_products=full)
    if l_max == 2 and not parity:
        assert any(form[0] == "general" for form in model.layers[0].products)  # 1e x 1e -> 1e, 2e x 1e -> 2e, ...
    graph = AtomicGraph.from_atoms(random_cuzr(seed=4)).build_neighbors(model.r_max)
    vectors = graph.edge_vectors().detach().requires_grad_(True)
    numbers, edges = graph.numbers, graph.edge_index
    ours, theirs = model(numbers, edges, vectors), reference_energies(model, numbers, edges, vectors)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    params = [vectors] + list(model.parameters())
    for a, b in zip(torch.autograd.grad(ours.sum(), params, allow_unused=True),
                    torch.autograd.grad(theirs.sum(), params, allow_unused=True)):
        if a is None or b is None:  # e3nn's empty tensor-product and bias weights
            assert (a is None or a.numel() == 0) and (b is None or b.numel() == 0)
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_training_derivatives_equal_e3nns_modules():
    """The loss gradient of forces (a second derivative, as training takes it) through both paths."""
    model = small_model(architecture="allegro", l_max=1)
    graph = AtomicGraph.from_atoms(random_cuzr(seed=5)).build_neighbors(model.r_max)
    vectors = graph.edge_vectors().detach().requires_grad_(True)
    grads = []
    for energies in (model, lambda *args: reference_energies(model, *args)):
        e = energies(graph.numbers, graph.edge_index, vectors).sum()
        dedv, = torch.autograd.grad(e, vectors, create_graph=True)
        grads.append(torch.autograd.grad(dedv.pow(2).sum() + e, list(model.parameters()), allow_unused=True))
    for a, b in zip(*grads):
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_forces_of_the_closed_form_match_finite_differences():
    model = small_model(architecture="allegro", l_max=1)
    atoms = random_cuzr(seed=6)
    graph = AtomicGraph.from_atoms(atoms).build_neighbors(model.r_max)
    forces = compute_properties(model, graph)["forces"].detach()
    h, k = 1e-5, 3
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[k, 0] += sign * h
        moved_graph = AtomicGraph.from_atoms(moved).build_neighbors(model.r_max)
        energies.append(float(compute_properties(model, moved_graph, forces=False)["energy"].detach()))
    assert abs(-(energies[0] - energies[1]) / (2 * h) - float(forces[k, 0])) < 1e-7
