"""``python -m equicalc ...`` (as ``torchrun -m equicalc train config.yaml`` runs it): the command line."""
import sys

from .cli import main

sys.exit(main())
