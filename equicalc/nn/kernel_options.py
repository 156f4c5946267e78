"""How equicalc's CPU kernels are compiled: ``numba.njit(**KERNEL_OPTIONS)``.

Parallel loops (``prange``) and fast math, so that sums over channels are vectorised. No on-disk cache
(``cache=True``): numba optimises the code it loads from its cache otherwise than the code it compiles in the
running process (its vectorised sums come out in another order; without fast math's reassociation the two
agree, but MD steps took 15–45 % longer in the timings here), so with a cache the first run after an install,
which compiles, and every later run, which loads, differed in the last bits of the forces, hence in their
trajectories. Each process now compiles the kernels at its first evaluation (4–5 s on 2 cores), and every run of
the same inputs gives the same bits (``tests/test_calculator.py`` compares two processes).
"""

KERNEL_OPTIONS = dict(parallel=True, fastmath=True)
