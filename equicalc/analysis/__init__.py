"""Analyses that need only ASE ``Atoms`` and an ASE calculator (EquiCalc, EMT, EAM...).

    from equicalc.analysis import rdf, quench, quench_series, voronoi, fit_glass_transition, phonons, band_structure

The names ``rdf``, ``quench``, ``quench_series``, ``voronoi`` and ``phonons`` are the functions; their modules
(``equicalc.analysis.rdf``...) hold the result classes and helpers.
"""
from .elastic import cubic_elastic_constants
from .phonons import band_structure, density_of_states, frequency_range, phonons, plot_phonons, thermal_properties
from .quench import EnsembleQuenchResult, GlassTransition, QuenchResult, fit_glass_transition, load_quench, quench, report
from .series import QuenchSeries, RateFit, quench_series
from .rdf import RDFResult, StructureFactor, rdf
from .tg import ensemble_glass_transition, pooled_glass_transition
from .voronoi import VoronoiResult, voronoi, voronoi_indices

__all__ = ["rdf", "RDFResult", "StructureFactor", "quench", "QuenchResult", "EnsembleQuenchResult", "GlassTransition",
           "load_quench", "report", "quench_series", "QuenchSeries", "RateFit",
           "fit_glass_transition", "voronoi", "voronoi_indices", "VoronoiResult", "ensemble_glass_transition", "pooled_glass_transition", "phonons", "band_structure", "density_of_states", "thermal_properties",
           "frequency_range", "plot_phonons", "cubic_elastic_constants"]
