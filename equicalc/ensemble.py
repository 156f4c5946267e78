"""Replica ensembles: ordinary ASE MD runs advanced in lockstep, their force calls pooled into one batch.

    group = BatchedCalculators(EquiCalc("cuzr"), n=4)        # four proxy ASE calculators
    dyns = []
    for k, atoms in enumerate(replicas):
        atoms.calc = group[k]
        dyns.append(Langevin(atoms, 2 * units.fs, temperature_K=1500, friction=0.01, rng=np.random.default_rng(k)))
    group.run([lambda d=d: d.run(1000) for d in dyns])

Each replica keeps its own ASE integrator, thermostat, random stream, observers
and trajectory: nothing about the MD changes. What changes is where the forces
come from: replica ``k``'s calculator is a proxy that hands its structure to the
group and waits; when every replica has asked (one MD step), the group makes one
``calculate_batch`` call for all of them (one by one for a calculator without
it: EMT, the EAM, any ASE calculator) and hands each its results. With an
``EquiCalc`` each replica keeps its own neighbour list, reused within its skin
as a single calculator does. N small structures then cost about one evaluation
of their union, which is where a network's fixed cost per call is amortised.

The replicas run in threads and meet at every force call, where the calling
thread evaluates for all of them; so they must ask for forces equally often: the same integrator and the same number of
steps for all. An error in any replica (or in the calculator) stops all of them
and is raised by ``group.run``.
"""
from __future__ import annotations

import threading
from typing import Callable, List, Sequence

from ase.calculators.calculator import Calculator, all_changes

__all__ = ["BatchedCalculators", "ReplicaCalculator"]


class ReplicaCalculator(Calculator):
    """The ASE calculator of one replica: evaluations go through its ``BatchedCalculators`` group."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, group: "BatchedCalculators", index: int):
        super().__init__()
        self.group, self.index = group, index

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = dict(self.group.evaluate(self.index, self.atoms))

    def fingerprint(self) -> dict:
        """The fingerprint of the group's calculator (what the results come from)."""
        from .md import calculator_fingerprint

        return calculator_fingerprint(self.group.calc)


class BatchedCalculators:
    """``n`` proxy calculators (``group[k]``) whose evaluations reach ``calc`` together, one batch per round.

    Args:
        calc: any ASE calculator; with a ``calculate_batch`` method (``EquiCalc``) one call serves all replicas.
        n: number of replicas (>= 1). All of them must ask for forces equally often (lockstep).

    Attributes:
        calls: number of rounds evaluated so far (batched calls, or rounds of one-by-one calls).
    """

    def __init__(self, calc, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"BatchedCalculators: the number of replicas must be a positive integer, got {n!r}")
        self.calc, self.n = calc, n
        self.calls = 0
        self._calculators = [ReplicaCalculator(self, k) for k in range(n)]
        # each replica keeps its own neighbour list between steps when the calculator offers that (EquiCalc)
        self._lists = calc.neighbor_lists(n) if hasattr(calc, "neighbor_lists") else None
        self._cond = threading.Condition()
        self._running = False
        self._reset()

    def _reset(self) -> None:
        self._pending: List = [None] * self.n
        self._results: List = [None] * self.n
        self._arrived, self._round, self._finished, self._error = 0, 0, 0, None

    def __getitem__(self, k: int) -> ReplicaCalculator:
        return self._calculators[k]

    def __len__(self) -> int:
        return self.n

    def evaluate(self, k: int, atoms) -> dict:
        """Results for replica ``k``'s ``atoms``: pooled with the other replicas' inside ``run``, at once outside it
        (building an integrator, or looking at a structure before or after the run)."""
        if not self._running:
            return _single(self.calc, atoms)
        with self._cond:
            if self._finished or self._error is not None:
                raise self._stopped()
            self._pending[k] = atoms.copy()
            self._arrived += 1
            this_round = self._round
            self._cond.notify_all()  # the caller's thread evaluates once all have arrived
            self._cond.wait_for(lambda: self._round != this_round or self._finished or self._error is not None)
            if self._round == this_round:
                raise self._stopped()
            if self._error is not None:
                raise RuntimeError(f"the ensemble's evaluation failed: {self._error}") from self._error
            return self._results[k]

    def _serve(self) -> None:
        """In the caller's thread: evaluate each round once every replica has arrived, until they all end.

        One thread does every evaluation, so the calculator's thread pools (OpenMP, numba) are those of one
        thread, as in a plain run, and never several competing ones.
        """
        with self._cond:
            while True:
                self._cond.wait_for(lambda: self._arrived == self.n or self._finished)
                if self._arrived == self.n and not self._finished:
                    self._evaluate_all()
                    self._arrived, self._round = 0, self._round + 1
                    self._cond.notify_all()
                    continue
                self._cond.notify_all()  # a replica ended: the others cannot complete a round any more
                self._cond.wait_for(lambda: self._finished == self.n)
                return

    def _stopped(self) -> RuntimeError:
        if self._error is not None:
            return RuntimeError(f"another replica of the ensemble stopped: {self._error}")
        return RuntimeError("the replicas asked for forces unequally often: run them in lockstep (the same "
                            "integrator and number of steps)")

    def _evaluate_all(self) -> None:
        """One batched call (or one round of single calls) for all replicas; an error is kept for all of them."""
        structures, self._pending = self._pending, [None] * self.n
        try:
            if self._lists is not None:
                self._results = self.calc.calculate_batch(structures, neighbor_lists=self._lists)
            elif hasattr(self.calc, "calculate_batch"):
                self._results = self.calc.calculate_batch(structures)
            else:
                self._results = [_single(self.calc, atoms) for atoms in structures]
            self.calls += 1
        except Exception as exc:  # handed to every replica, which raise it
            self._error = exc

    def run(self, tasks: Sequence[Callable[[], object]]) -> list:
        """Run ``tasks`` (one per replica, e.g. ``lambda: dyn.run(steps)``) in threads that meet at every force call.

        Returns their return values in order. When a task raises, or ends while others still ask for forces
        (unequal numbers of calls), the others stop and the first error is raised here.
        """
        if len(tasks) != self.n:
            raise ValueError(f"BatchedCalculators.run: {len(tasks)} tasks for {self.n} replicas")
        results: List = [None] * self.n
        errors: List = []

        def runner(k, task):
            try:
                results[k] = task()
            except BaseException as exc:  # noqa: BLE001 - raised in the caller below
                errors.append(exc)
            finally:  # no round can complete without this replica any more
                with self._cond:
                    self._finished += 1
                    self._cond.notify_all()

        threads = [threading.Thread(target=runner, args=(k, t), daemon=True) for k, t in enumerate(tasks)]
        self._reset()
        self._running = True
        try:
            for t in threads:
                t.start()
            self._serve()
            for t in threads:
                t.join()
        finally:
            self._running = False
        if errors:
            raise next((e for e in errors if not isinstance(e, RuntimeError)), errors[0])
        return results


def _single(calc, atoms) -> dict:
    """Energy, forces and (for periodic cells) stress of one structure from any ASE calculator."""
    if hasattr(calc, "calculate_batch"):
        return calc.calculate_batch([atoms])[0]
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    out["free_energy"] = out["energy"]
    if all(atoms.pbc):
        out["stress"] = atoms.get_stress()
    return out
