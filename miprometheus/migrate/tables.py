"""What the original MI-Prometheus's names and keys are here: the mapping tables of ``mip migrate``, as data.

A component table maps a key of the original's model or problem section (dotted inside the section, as the
original's code read it: ``controller.hidden_state_size``) to a rule. A key missing from the table of a
component the original read through a table here was one its code never read: the original ignored it, and so
does the conversion (reporting it). Components without a table keep the keys this project declares under the
same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the sentinel of :class:`NoEquivalent` that no value matches
ANY_VALUE = object()


@dataclass(frozen=True)
class Rename:
    """The key is ``to`` here (``""``: the same name); the value keeps its meaning."""

    to: str = ""


@dataclass(frozen=True)
class Convert:
    """The key becomes ``to`` with its value converted by the converter's function ``how`` (its meaning differs)."""

    to: str
    how: str


@dataclass(frozen=True)
class NoEquivalent:
    """The original used the key, and nothing here does what it did. A value among ``unless`` is this project's
    behaviour: the key is dropped saying so. ``blocking``: the converted config would be another experiment."""

    why: str
    unless: tuple[Any, ...] = ()
    blocking: bool = True


@dataclass(frozen=True)
class Drop:
    """The original used the key for something that is not a config value here (a window, a device)."""

    why: str


Rule = Rename | Convert | NoEquivalent | Drop

# --- names -------------------------------------------------------------------------------------------
#: the original's algorithmic tasks with command lines are this project's tasks of the same name without the suffix
COMMAND_LINE_TASKS = ("SerialRecall", "ReverseRecall", "RepeatSerialRecall", "RepeatReverseRecall", "ScratchPad",
                      "SkipRecall", "SequenceComparison", "SequenceEquality", "SequenceSymmetry")
PROBLEM_NAMES = {**{f"{task}CommandLines": task for task in COMMAND_LINE_TASKS},
                 "PermutedSequentialRowMnist": "PermutedSequentialRowMNIST"}
MODEL_NAMES = {"ThalNetModel": "ThalNet", "AlexnetWrapper": "AlexNet", "MACNetwork": "MAC", "sMacNetwork": "SMAC",
               "StackedAttentionNetwork": "SAN", "MultiHopsStackedAttentionNetwork": "SAN"}
#: values a renamed model implies (the original's one-hop network is SAN with one hop)
MODEL_NAME_VALUES = {"StackedAttentionNetwork": {"num_hops": 1}}
#: components of the original that this project does not have, and why
PROBLEMS_NOT_HERE = {
    "COG": "the COG dataset (Yang et al. 2018) is not implemented here",
    "VQAMED": "the VQA-Med 2019 dataset is not implemented here",
    "DualSerialReverseRecallCommandLines": "this task was dropped from the original before its last release and is "
                                           "not implemented here",
}
MODELS_NOT_HERE = {
    "VWM": "the original's VWM model (for COG) is not implemented here",
    "CogModel": "the original's COG baseline is not implemented here",
    "MACNetworkSequential": "the original's sequential MAC (for COG) is not implemented here",
    "SequentialMAC": "the original's sequential MAC (for COG) is not implemented here",
    "MentalModel": "the original's mental-model experiment is not implemented here",
}
#: the original's controller classes (and its early lower-case names) -> this project's controller names
CONTROLLER_NAMES = {"RNNController": "rnn", "LSTMController": "lstm", "GRUController": "gru",
                    "FeedforwardController": "feedforward", "FFGRUController": "ffgru",
                    "rnn": "rnn", "lstm": "lstm", "gru": "gru", "feedforward": "feedforward", "ffgru": "ffgru"}
#: the original's CLEVR ``settings.dataset_variant`` -> this project's problem
CLEVR_VARIANTS = {"CLEVR": "CLEVR", "CLEVR-CoGenT": "CLEVRCoGenT", "CLEVR-Humans": None}

# --- the trainers ----------------------------------------------------------------------------------------
#: the original's console scripts (grid_settings.trainer) -> the trainer whose defaults apply
TRAINER_SCRIPTS = {"mip-online-trainer": "online", "mip-offline-trainer": "offline",
                   "online_trainer": "online", "offline_trainer": "offline"}
#: what the original's workers set when a config did not (their code, not the configs, held these)
TRAINER_DEFAULTS = {
    "online": {"loss_stop": 1e-5, "episode_limit": 100_000, "epoch_limit": None, "partial_validation_interval": 100},
    "offline": {"loss_stop": 1e-5, "episode_limit": None, "epoch_limit": 10, "partial_validation_interval": None},
}
#: limits the original's configs misspelt: its trainers ignored them and used their defaults
MISSPELT_LIMITS = {"episodes_limit": "episode_limit", "eposides_limit": "episode_limit", "epochs_limit": "epoch_limit",
                   "max_episodes": "episode_limit", "max_epochs": "epoch_limit"}

DEVICE = "the device is chosen on the command line here (mip train --gpu, --device cuda)"
WINDOW = "the original's visualisation setting; here mip train --visualize draws the model"

# --- models ----------------------------------------------------------------------------------------------
_SIZES = {"input_item_size": Rename(), "output_item_size": Rename()}
_CONTROLLER = {
    "controller.name": Convert("controller", "controller_name"),
    "controller.hidden_state_size": Rename("hidden_size"),
    "controller.num_layers": NoEquivalent("the controllers here have one layer", unless=(1,)),
    "controller.non_linearity": Rename("non_linearity"),
}
_MEMORY = {"memory.num_content_bits": Rename("num_content_bits"), "memory.num_addresses": Rename("num_addresses")}
_NTM = {**_SIZES, **_CONTROLLER, **_MEMORY,
        "interface.num_read_heads": Rename("num_read_heads"),
        "interface.shift_size": Rename("shift_size"),
        "interface.use_content_based_addressing": Rename("use_content_addressing")}
_SAN_LSTM = {
    "lstm.hidden_size": Rename("question_hidden_size"),
    "lstm.num_layers": NoEquivalent("the question LSTM here has one layer", unless=(1,)),
    "lstm.bidirectional": NoEquivalent("the question LSTM here is unidirectional", unless=(False,)),
    "lstm.dropout": NoEquivalent("the question LSTM here has no dropout", unless=(0, 0.0)),
    "classifier.nb_hidden_nodes": Rename("classifier_hidden"),
}
MODEL_TABLES: dict[str, dict[str, Rule]] = {
    "NTM": _NTM,
    "EncoderSolverNTM": {**_NTM, "encoding_bit": Rename("store_bit"), "solving_bit": Rename("recall_bit"),
                         "pass_cell_state": Rename()},
    "DNC": {
        **_SIZES, **_CONTROLLER,
        "hidden_state_size": Rename("hidden_size"),
        "memory_content_size": Rename("word_size"),
        "memory_addresses_size": Rename("num_addresses"),
        "num_reads": Rename("num_read_heads"),
        "num_writes": NoEquivalent("the DNC here has one write head", unless=(1,)),
        "controller_type": Convert("controller", "controller_name"),
        "non_linearity": Rename(),
        "shift_size": Drop("the original's DNC used it only with its use_ntm_* addressing, which the DNC here does "
                           "not have (it follows the paper)"),
        "use_ntm_write": NoEquivalent("NTM-style writing is not part of the DNC here (the paper's DNC)", (False,)),
        "use_ntm_read": NoEquivalent("NTM-style reading is not part of the DNC here (the paper's DNC)", (False,)),
        "use_ntm_order": NoEquivalent("NTM-style ordering is not part of the DNC here (the paper's DNC)", (False,)),
        "use_extra_write_gate": NoEquivalent("the DNC here has the paper's gates only", (False,)),
        "use_content_addressing": NoEquivalent("the DNC here always addresses by content (the paper's DNC)",
                                               (True,)),
        "plot_memory": Drop(WINDOW),
    },
    "DWM": {
        **_SIZES, **_CONTROLLER,
        "hidden_state_size": Rename("hidden_size"),
        "controller_type": Convert("controller", "controller_name"),
        "non_linearity": Rename(),
        "num_heads": Rename(),
        "use_content_addressing": Rename(),
        "shift_size": Rename(),
        "memory_content_size": Rename("num_content_bits"),
        "memory_addresses_size": Rename("num_addresses"),
    },
    "MAES": {
        **_SIZES, **_CONTROLLER, **_MEMORY,
        "mae_interface.shift_size": Rename("shift_size"),
        "mas_interface.shift_size": Rename("shift_size"),
        "encoding_bit": Rename("store_bit"),
        "solving_bit": Rename("recall_bit"),
        "pass_cell_state": Rename(),
    },
    "EncoderSolverLSTM": {**_SIZES, "hidden_state_size": Rename("hidden_size"), "encoding_bit": Rename("store_bit"),
                          "solving_bit": Rename("recall_bit")},
    "LSTM": {**_SIZES, "hidden_state_size": Rename("hidden_size"), "num_layers": Rename()},
    "ThalNet": {"context_input_size": Rename("context_size"), "center_size_per_module": Rename(),
                "num_modules": Rename(), "input_size": Rename("input_item_size"),
                "output_size": Rename("output_item_size")},
    "CNN_LSTM": {
        **_SAN_LSTM,
        "use_question_encoding": NoEquivalent(
            "the CNN_LSTM here always encodes the question's words with its LSTM; with false, the original fed "
            "Sort-of-CLEVR's question code to its classifier", unless=(True,)),
    },
    "SAN": {
        **_SAN_LSTM,
        "use_pretrained_cnn": NoEquivalent(
            "a pretrained ResNet-18 image encoder has no equivalent here: SAN encodes the images with the RN "
            "paper's 4-layer CNN, trained from scratch (image_encoder: conv4)", unless=(False,)),
        "pretrained_cnn.name": Drop("it named the pretrained encoder of use_pretrained_cnn"),
        "pretrained_cnn.num_layers": Drop("it sized the pretrained encoder of use_pretrained_cnn"),
        "attention_layer.nb_nodes": Rename("attention_size"),
        "default_nb_hops": Rename("num_hops"),
    },
    "MAC": {"dim": Rename(), "embed_hidden": Rename("embedding_size"), "max_step": Rename(),
            "self_attention": Rename(), "memory_gate": Rename(), "dropout": Rename()},
    "SMAC": {"dim": Rename(), "embed_hidden": Rename("embedding_size"), "max_step": Rename(), "dropout": Rename()},
    "AlexNet": {"pretrained": NoEquivalent("ImageNet-pretrained AlexNet weights have no equivalent here (AlexNet is "
                                           "trained from scratch)", unless=(False,))},
    "LeNet5": {},
    "SimpleConvNet": {
        **{f"conv{i}.{key}": Rename(f"conv{i}_{ours}") for i in (1, 2)
           for key, ours in (("out_channels", "out_channels"), ("kernel_size", "kernel"), ("stride", "stride"),
                             ("padding", "padding"))},
        "maxpool1.kernel_size": Rename("pool1_kernel"),
        "maxpool2.kernel_size": Rename("pool2_kernel"),
    },
}
#: keys every model section of the original may hold
MODEL_COMMON: dict[str, Rule] = {"visualization_mode": Drop(WINDOW), "plot_memory": Drop(WINDOW),
                                 "cuda": Drop(DEVICE)}
#: what the original's models did without a key, where this project's default differs: written into the config
MODEL_ORIGINAL_VALUES: dict[str, dict[str, tuple[Any, str]]] = {
    "NTM": {"memory_init": ("zero", "the original's NTM started from a memory of zeros")},
    "RelationalNetwork": {"question_input": ("code", "the original's RelationalNetwork read the problem's question "
                                                     "code, not the question's words")},
}
#: the size of the flattened question code per problem (RelationalNetwork's question_code_size)
QUESTION_CODE_SIZES = {"SortOfCLEVR": 13, "ShapeColorQuery": 21}
#: problems whose batches hold raw images: MAC and S-MAC read them through the RN paper's CNN here
RAW_IMAGE_PROBLEMS = ("SortOfCLEVR", "ShapeColorQuery")

# --- problems --------------------------------------------------------------------------------------------
_DATA_FOLDER = {"data_folder": Rename(), "cuda": Drop(DEVICE)}
_MNIST_FOLDERS = {"data_folder": Rename(), "mnist_folder": Rename("data_folder"), "root_dir": Rename("data_folder")}
_SEQUENTIAL_MNIST = {**_MNIST_FOLDERS, "cuda": Drop(DEVICE), "batch_size": Rename(), "use_train_data": Rename(),
                     "index": Convert("sampler.indices", "inclusive_index"),
                     "start_index": Convert("sampler.indices", "inclusive_index"),
                     "stop_index": Convert("sampler.indices", "inclusive_index")}
_SORT_OF_CLEVR = {**_DATA_FOLDER, "batch_size": Rename(), "split": Convert("split", "vqa_split"),
                  "dataset_size": Convert("num_scenes", "questions_to_scenes"), "img_size": Rename(),
                  "regenerate": Rename()}
PROBLEM_TABLES: dict[str, dict[str, Rule]] = {
    "MNIST": {**_MNIST_FOLDERS, "cuda": Drop(DEVICE), "batch_size": Rename(), "use_train_data": Rename(),
              "resize": Rename()},
    "CIFAR10": {**_DATA_FOLDER, "batch_size": Rename(), "use_train_data": Rename(), "resize": Rename()},
    "SequentialPixelMNIST": _SEQUENTIAL_MNIST,
    "SequentialRowMNIST": _SEQUENTIAL_MNIST,
    "PermutedSequentialRowMNIST": _SEQUENTIAL_MNIST,
    "SortOfCLEVR": _SORT_OF_CLEVR,
    "ShapeColorQuery": _SORT_OF_CLEVR,
    "CLEVR": {
        "cuda": Drop(DEVICE), "batch_size": Rename(),
        "settings.data_folder": Rename("data_folder"),
        "settings.set": Rename("split"),
        "settings.dataset_variant": Drop("it chose CLEVR or CoGenT: the problem's name here"),
        "images.raw_images": Convert("images", "raw_images"),
        "images.feature_extractor.cnn_model": Drop("mip extract-features writes the ResNet-101 features read here"),
        "images.feature_extractor.num_blocks": Drop("mip extract-features writes the ResNet-101 features read here"),
        "questions.embedding_type": NoEquivalent("pretrained word embeddings have no equivalent here: the models "
                                                 "learn their embeddings", unless=("random",)),
        "questions.embedding_dim": Convert("model.embedding_size", "to_model"),
    },
}
PROBLEM_TABLES["CLEVRCoGenT"] = PROBLEM_TABLES["CLEVR"]
#: problem keys the sections read (not the problem's own): moved to the section by the converter
PROBLEM_SECTION_KEYS = ("max_test_episodes",)
#: Sort-of-CLEVR asks 7 questions of each of 2..6 objects (4 on average): 28 questions per scene
QUESTIONS_PER_SCENE = 28
SPLIT_NAMES = {"val": "validation", "valid": "validation", "training": "train", "testing": "test"}

# --- sections ----------------------------------------------------------------------------------------------
#: the original's samplers that took the whole problem -> what does the same here
WHOLE_SAMPLERS = {"RandomSampler": None, "SequentialSampler": {"name": "SubsetSequentialSampler", "indices": "0:"}}
SUBSET_SAMPLERS = ("SubsetRandomSampler", "SubsetSequentialSampler")
DATALOADER_KEYS = ("num_workers", "pin_memory", "drop_last", "timeout")
#: markers of this project's format: a file holding one of them is not an original config
THIS_PROJECT_KEYS = {
    "description": "top-level 'description'",
    "training.scheduler": "training.scheduler", "training.early_stopping": "training.early_stopping",
    "training.checkpoint_interval": "training.checkpoint_interval", "training.log_interval": "training.log_interval",
    "training.precision": "training.precision", "training.seed": "training.seed",
    "validation.interval": "validation.interval", "validation.every_epoch": "validation.every_epoch",
    "validation.num_batches": "validation.num_batches", "testing.settings": "testing.settings",
    "testing.model_overrides": "testing.model_overrides", "testing.num_batches": "testing.num_batches",
    "model.init_from": "model.init_from", "model.freeze": "model.freeze",
    "grid_settings.executor": "grid_settings.executor", "grid_settings.sweep": "grid_settings.sweep",
    "grid_settings.search": "grid_settings.search", "grid_settings.retries": "grid_settings.retries",
}
#: sections of the original's early versions (before training/validation/testing sections)
EARLY_SECTIONS = ("problem_train", "problem_validation", "problem_test", "settings")
CONFIG_SECTIONS = ("training", "validation", "testing", "model")
GRID_SECTIONS = ("grid_tasks", "grid_settings", "grid_overwrite")
