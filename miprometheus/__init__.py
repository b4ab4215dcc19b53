"""MI-Prometheus: reproducible experiments and grids of experiments on PyTorch.

Importing this package is cheap: torch and the components are imported only when used.
"""

__version__ = "0.4.0"
