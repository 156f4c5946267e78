"""Equivariant networks, their shared pieces, and forces/stress by autograd."""
from .allegro import Allegro
from .forces import compute_properties
from .nequip import NequIP
from .radial import BesselBasis, RadialEmbedding, polynomial_envelope

__all__ = ["NequIP", "Allegro", "compute_properties", "BesselBasis", "RadialEmbedding", "polynomial_envelope"]
