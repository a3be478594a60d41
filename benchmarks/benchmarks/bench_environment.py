"""What the suite's contenders run on, recorded beside their timings: the CPU and each
contender's BLAS are the parameter values of these tracks, so the dashboard names them (one
series per CPU and library version, which is what a change of machine or library should be)."""
from . import environment


class Environment:
    params = [[f"{name}: {environment.blas(name)}" for name in environment.CONTENDERS] + [f"CPU: {environment.cpu()}"]]
    param_names = ["contender and its BLAS"]

    def setup(self, described):
        if described.endswith("not installed"):
            raise NotImplementedError(described)

    def track_threads(self, described):
        """The threads each contender is given in this suite (common.THREADS)."""
        import os

        from .common import THREADS

        return os.cpu_count() if described.startswith("CPU") else THREADS

    track_threads.unit = "threads"
