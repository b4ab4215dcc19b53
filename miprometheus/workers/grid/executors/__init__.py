"""Executors run grid jobs: locally in child processes, on a Ray cluster, or on SLURM."""

from __future__ import annotations

from miprometheus.workers.grid.executors.base import Executor, Job, JobResult


def make_executor(name: str, settings: object) -> Executor:
    """The executor named in ``grid_settings.executor``."""
    if name == "local":
        from miprometheus.workers.grid.executors.local import LocalExecutor

        return LocalExecutor(warm_start=getattr(settings, "warm_start", True))
    if name == "ray":
        from miprometheus.workers.grid.executors.ray_executor import RayExecutor

        return RayExecutor(settings)
    if name == "slurm":
        from miprometheus.workers.grid.executors.slurm import SlurmExecutor

        return SlurmExecutor(settings)
    raise ValueError(f"unknown executor {name!r}")


__all__ = ["Executor", "Job", "JobResult", "make_executor"]
