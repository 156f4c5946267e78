"""equicalc models in LAMMPS: ``pair_style equicalc``, a plugin compiled against the installed LAMMPS and torch.

    equicalc deploy cuzr --lammps cuzr_lammps      # cuzr_lammps/model.pt2 (AOTInductor package)
    equicalc lammps-plugin                         # prints the path of equicalcplugin.so (built once)

and in a LAMMPS input::

    plugin load /path/to/equicalcplugin.so
    pair_style equicalc
    pair_coeff * * cuzr_lammps/model.pt2 Cu Zr
"""
from .build import build_plugin
from .export import export_lammps, ghost_cutoff

__all__ = ["build_plugin", "export_lammps", "ghost_cutoff"]
