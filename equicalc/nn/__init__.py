"""Equivariant networks, their specs and shared pieces, and forces/stress by autograd.

    NequIPSpec, AllegroSpec      every hyperparameter once (type, default, unit, rules)
    NequIP, Allegro              the networks, built from a spec
    compute_properties           energy, forces, stress and virial in one autograd pass
    fuse                         the convolutions' inference form (equicalc.nn.fused_cpu)
"""
from .allegro import Allegro
from .forces import compute_properties, is_fused
from .fused_cpu import fuse
from .nequip import NequIP
from .radial import BesselBasis, RadialEmbedding, polynomial_envelope
from .specs import SPECS, AllegroSpec, ModelSpec, NequIPSpec, spec_from_dict

__all__ = ["NequIP", "Allegro", "NequIPSpec", "AllegroSpec", "ModelSpec", "SPECS", "spec_from_dict",
           "compute_properties", "is_fused", "fuse", "BesselBasis", "RadialEmbedding", "polynomial_envelope"]

