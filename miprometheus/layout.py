"""The names of the files in experiment and grid folders: the interface between experiments, tests and grids.

An experiment folder (DESIGN §6) is read back by ``mip test``, ``--resume``, the grid runner and the
grid analysis; every one of them takes the names from here (``tests/test_layout.py`` finds a name
spelled elsewhere). So do ``mip extract-features`` and the problems reading the feature files it
writes into a dataset's folder.
"""

from __future__ import annotations

#: the default parent folder of experiment and grid folders (``--expdir``)
EXPDIR = "experiments"

# --- an experiment folder: <expdir>/<Problem>/<Model>/<timestamp>[_<savetag>]/ ---------------------
TRAINING_CONFIG = "training_configuration.yaml"  # the effective config: re-running it reproduces the run
RUN_INFO = "run_info.json"  # command line, seed, versions, status, termination cause
ASSETS = "assets.json"  # vocabularies / answer sets built from the training split (problems that have them)
TRAINER_LOG = "trainer.log"
TRAINING_CSV = "training_statistics.csv"  # one row per episode
VALIDATION_CSV = "validation_statistics.csv"  # one row per validation (exact aggregates)
#: written by another process (a search's pruner, a user) to end the run at its next validation or epoch end
STOP_REQUEST = "stop_request.json"
LOCK = ".lock"  # locks.FolderLock: the process working in an experiment or grid folder (pid, host, since)
MODELS_DIR = "models"
BEST = "model_best.pt"  # weights at the lowest validation loss
LAST = "model_last.pt"  # the full resume state
TENSORBOARD_DIR = "tensorboard"
MODEL_GRAPH = "model_graph"  # model_graph.svg, .png and .gv (the Graphviz source): the model's graph (--graph)
VISUALIZATIONS_DIR = "visualizations"
VISUALIZATION_EPISODE_PREFIX = "episode_"  # visualizations/episode_<n>/: --visualize at a validation
TEST_DIR_PREFIX = "test_"  # test_<timestamp>/, one per `mip test`
TESTING_CONFIG = "testing_configuration.yaml"
TESTER_LOG = "tester.log"
TESTING_CSV = "testing_statistics.csv"  # one row per test batch
TESTING_AGG_CSV = "testing_set_agg_statistics.csv"  # the exact aggregate of the testing split
#: a test's sample outputs beside their references (problems that describe samples, e.g. translations)
TEST_SAMPLES = "samples.txt"
#: the MLflow run(s) an experiment or a grid logs to (tracking URI, experiment, run id): a resume continues its run
MLFLOW_RUN = "mlflow_run.json"

# --- a grid folder: <expdir>/grid_<timestamp>[_<savetag>]/ ---------------------------------------------
GRID_DIR_PREFIX = "grid_"
GRID_CONFIG = "grid_configuration.yaml"
MANIFEST = "manifest.json"
GRID_CONFIGS_DIR = "configs"  # configs/<id>.yaml
GRID_LOGS_DIR = "logs"  # logs/<id>.train.log, logs/<id>.test.log
GRID_EXPERIMENTS_DIR = "experiments"  # experiments/<id>/<Problem>/<Model>/<timestamp>/
#: experiments/<id>/_abandoned/: attempts killed before their first checkpoint, set aside (not experiments)
GRID_ABANDONED_DIR = "_abandoned"
SEARCH_JOURNAL = "search.journal"  # the Optuna studies of a grid's search (one per task), a JournalFileBackend log
SEARCH_SUMMARY_CSV = "search_summary.csv"  # per task: best parameters, re-evaluated test mean ± std, CI, budget
GRID_SLURM_DIR = "slurm"  # submitit's own files, with the slurm executor
ANALYSIS_CSV = "grid_analysis.csv"
SUMMARY_CSV = "grid_summary.csv"
PLOTS_DIR = "plots"
REPORT_HTML = "report.html"

# --- a dataset's data folder, written by `mip extract-features` and read by the problems ---------------
#: <data_folder>/features/<extractor>/<split>.npy: pre-extracted image features (CLEVR)
FEATURES_DIR = "features"


# --- the paths of one grid experiment's files, relative to the grid folder --------------------------------
def grid_config_file(experiment_id: str) -> str:
    """``configs/<id>.yaml``: the experiment's config, as the grid wrote it."""
    return f"{GRID_CONFIGS_DIR}/{experiment_id}.yaml"


def grid_log_file(experiment_id: str, phase: str) -> str:
    """``logs/<id>.<phase>.log``: what the experiment's ``mip train`` (phase ``train``) or ``mip test`` printed."""
    return f"{GRID_LOGS_DIR}/{experiment_id}.{phase}.log"


def grid_output_dir(experiment_id: str) -> str:
    """``experiments/<id>``: the ``--expdir`` of the experiment's training, holding its experiment folder."""
    return f"{GRID_EXPERIMENTS_DIR}/{experiment_id}"
