"""equicalc: E(3)-equivariant machine-learned interatomic potentials behind an ASE calculator.

    from equicalc import EquiCalc
    atoms.calc = EquiCalc("model.pth")
"""
__version__ = "0.1.0"

from .calculator import EquiCalc  # noqa: E402
from .model_io import build_model, load_model, save_model  # noqa: E402

__all__ = ["EquiCalc", "build_model", "load_model", "save_model", "__version__"]
