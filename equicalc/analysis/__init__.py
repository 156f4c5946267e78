"""Analyses that need only ASE ``Atoms`` and an ASE calculator (EquiCalc, EMT, EAM...).

    from equicalc.analysis import rdf, quench, fit_glass_transition, phonons
"""
from .quench import GlassTransition, QuenchResult, fit_glass_transition, quench
from .rdf import RDFResult, StructureFactor, rdf

__all__ = ["rdf", "RDFResult", "StructureFactor", "quench", "QuenchResult", "GlassTransition",
           "fit_glass_transition"]
