"""The names of the files in experiment and grid folders: the interface between experiments, tests and grids.

An experiment folder (DESIGN §6) is read back by ``mip test``, ``--resume``, the grid runner and the
grid analysis; every one of them takes the names from here.
"""

from __future__ import annotations

# --- an experiment folder: <expdir>/<Problem>/<Model>/<timestamp>[_<savetag>]/ ---------------------
TRAINING_CONFIG = "training_configuration.yaml"  # the effective config: re-running it reproduces the run
RUN_INFO = "run_info.json"  # command line, seed, versions, status, termination cause
ASSETS = "assets.json"  # vocabularies / answer sets built from the training split (problems that have them)
TRAINER_LOG = "trainer.log"
TRAINING_CSV = "training_statistics.csv"  # one row per episode
VALIDATION_CSV = "validation_statistics.csv"  # one row per validation (exact aggregates)
MODELS_DIR = "models"
BEST = "model_best.pt"  # weights at the lowest validation loss
LAST = "model_last.pt"  # the full resume state
TENSORBOARD_DIR = "tensorboard"
VISUALIZATIONS_DIR = "visualizations"
TEST_DIR_PREFIX = "test_"  # test_<timestamp>/, one per `mip test`
TESTING_CONFIG = "testing_configuration.yaml"
TESTER_LOG = "tester.log"
TESTING_CSV = "testing_statistics.csv"  # one row per test batch
TESTING_AGG_CSV = "testing_set_agg_statistics.csv"  # the exact aggregate of the testing split
#: a test's sample outputs beside their references (problems that describe samples, e.g. translations)
TEST_SAMPLES = "samples.txt"

# --- a grid folder: <expdir>/grid_<timestamp>[_<savetag>]/ ---------------------------------------------
GRID_CONFIG = "grid_configuration.yaml"
MANIFEST = "manifest.json"
GRID_CONFIGS_DIR = "configs"  # configs/<id>.yaml
GRID_LOGS_DIR = "logs"  # logs/<id>.train.log, logs/<id>.test.log
GRID_EXPERIMENTS_DIR = "experiments"  # experiments/<id>/<Problem>/<Model>/<timestamp>/
ANALYSIS_CSV = "grid_analysis.csv"
SUMMARY_CSV = "grid_summary.csv"
PLOTS_DIR = "plots"
REPORT_HTML = "report.html"
