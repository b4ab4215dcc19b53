"""MI-Prometheus: reproducible experiments and grids of experiments on PyTorch.

Importing this package is cheap: torch and the components are imported only when used.
``miprometheus.load(path)`` gives a grid or a folder of experiments as a pandas DataFrame
(pandas is imported on first use).
"""

from typing import Any

__version__ = "0.4.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # `load` lives with the grid analysis, which needs pandas: imported when first asked for, not with the package.
    if name == "load":
        from miprometheus.workers.grid.analysis import load

        return load
    raise AttributeError(f"module 'miprometheus' has no attribute {name!r}")
