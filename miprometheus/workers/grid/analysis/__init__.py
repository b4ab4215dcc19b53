"""Grid analysis: every experiment side by side, a summary over repetitions, learning curves and a report.

``load(path)`` gives a grid (or any folder of experiments) as a pandas DataFrame, for notebooks;
``analyze(grid_dir)`` writes the grid's CSV tables, plots and HTML report (``mip grid analyze``).
The modules: ``collect`` reads the folders, ``tables`` builds the tables, ``plots`` draws the
learning curves, ``search_summary`` and ``search_plots`` sum up a grid's search (its table; its figures,
from the Optuna journal), ``report`` writes everything.
"""

from miprometheus.workers.grid.analysis.report import AnalysisResult, analyze
from miprometheus.workers.grid.analysis.tables import load

__all__ = ["AnalysisResult", "analyze", "load"]
