#!/usr/bin/env bash
# The GPU checks, from the repository root of a machine with a CUDA device (a few minutes on an H100/H200):
#
#   bash benchmarks/gpu_check.sh                 # the CUDA tests, then benchmarks/gpu_check.py
#   bash benchmarks/gpu_check.sh --sizes 108 500 # arguments go to gpu_check.py
#
# The package is used from this checkout (PYTHONPATH) with the machine's own torch. Wheels of
# packages that machine lacks (ase, vesin...) may be put in .whl/ beforehand; they are installed
# into a scratch folder first.
set -eo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
python3 benchmarks/gpu_check.py "$@"
