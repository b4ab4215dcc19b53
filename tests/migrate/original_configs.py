"""Configs in the original MI-Prometheus's format, written for tests/migrate in the style of the original
repository's ``configs/`` (its last release): ``default_configs`` as one comma-separated string of paths relative
to the directory the original ran in (the folder :func:`write_originals` fills), its problem and model names, its
keys; some hold what its configs often held (misspelt limits, ``cuda`` keys, keys no component read). Not configs
of this project: ``mip migrate`` converts them.
"""

from __future__ import annotations

from pathlib import Path

#: path under the original's root -> the file's text
ORIGINAL_CONFIGS = {
    "configs/cog/cog_mac.yaml": """\
training:
    problem:
        name: COG
        batch_size: 48
        data_folder: '{data}/cog'
        set: train
        dataset_type: canonical
    optimizer:
        name: Adam
        lr: 0.0001
validation:
    problem:
        name: COG
        batch_size: 48
        data_folder: '{data}/cog'
        set: val
        dataset_type: canonical
testing:
    problem:
        name: COG
        batch_size: 48
        data_folder: '{data}/cog'
        set: test
        dataset_type: canonical
model:
    name: MACNetwork
    dim: 512
    embed_hidden: 300
    max_step: 12
    self_attention: False
    memory_gate: False
    dropout: 0.15
""",
    "configs/default_simple_task.yaml": """\
# Problem parameters shared by the simple algorithmic tasks.
training:
    cuda: True
    problem:
        name: &name SerialRecallCommandLines
        # Size of generated input: [batch_size x sequence_length x number of control and data bits].
        control_bits: &cbits 2
        data_bits: &dbits 8
        batch_size: 32
        # Parameters denoting min and max lengths.
        min_sequence_length: 1
        max_sequence_length: 10
    # Set optimizer.
    optimizer:
        name: Adam
        lr: 0.003
    # Optional parameter, its presence results in clipping gradient to a range (-gradient_clipping, gradient_clipping)
    gradient_clipping: 10

# Problem parameters:
validation:
    problem:
        name: *name
        control_bits: *cbits
        data_bits: *dbits
        batch_size: 64
        min_sequence_length: 10
        max_sequence_length: 10

# Problem parameters:
testing:
    cuda: True
    problem:
        name: *name
        control_bits: *cbits
        data_bits: *dbits
        batch_size: 64
        min_sequence_length: 20
        max_sequence_length: 20
        max_test_episodes: 4
    multi_tests: {min_sequence_length: [20, 50], max_sequence_length: [20, 50]}
""",
    "configs/dnc/default_dnc.yaml": """\
# Model parameters:
model:
    name: DNC   # differentiable neural computer
    # Controller hidden state.
    hidden_state_size: 64
    # Memory.
    memory_content_size: 10
    memory_addresses_size: -1
    # Number of heads.
    num_writes: 1
    num_reads: 1
    # Addressing parameters.
    shift_size: 3
    controller_type: LSTMController
    use_ntm_write: False
    use_ntm_read: False
    use_ntm_order: False
    use_extra_write_gate: False
    non_linearity: sigmoid
    # active the plotting of the memory and attention
    plot_memory: False
""",
    "configs/dnc/serial_recall.yaml": """\
# Load the following (default) configs first.
default_configs:
    configs/dnc/default_dnc.yaml,
    configs/default_simple_task.yaml

# Then overwrite the terminal conditions.
training:
    terminal_conditions:
        loss_stop: 1.0e-4
        episode_limit: 4000
    seed_numpy: 4354
    seed_torch: 2452

validation:
    partial_validation_interval: 200
""",
    "configs/grids/grid_trainer_memory.yaml": """\
# Compare the NTM and the DNC on the same task.
grid_tasks:
  -
    default_configs: configs/ntm/default_ntm.yaml, configs/default_simple_task.yaml
  -
    default_configs: configs/dnc/default_dnc.yaml, configs/default_simple_task.yaml
    overwrite:
      model:
        hidden_state_size: 32

# Set exactly the same experiment conditions.
grid_overwrite:
  training:
    problem:
      batch_size: 16
    terminal_conditions:
      loss_stop: 1.0e-4
      episode_limit: 2000

grid_settings:
  # Set number of repetitions of each experiments.
  experiment_repetitions: 3
  # Set number of concurrent running experiments.
  max_concurrent_runs: 2
  # The trainer every experiment runs with.
  trainer: mip-online-trainer
""",
    "configs/ntm/default_ntm.yaml": """\
# Model parameters:
model:
    name: NTM
    # Optional parameter: visualization.
    visualization_mode: 2
    # Controller parameters.
    controller:
        name: RNNController
        hidden_state_size: 20
        num_layers: 1
        non_linearity: sigmoid
    # Interface
    interface:
        num_read_heads: 1
        shift_size: 3
        use_content_based_addressing: True
    # Memory parameters.
    memory:
        num_content_bits: 10
        num_addresses: -1
""",
    "configs/ntm/reverse_recall.yaml": """\
# Load the following (default) configs first.
default_configs: configs/ntm/default_ntm.yaml, configs/default_simple_task.yaml

training:
    problem:
        name: &name ReverseRecallCommandLines
    curriculum_learning:
        interval: 500
        initial_max_sequence_length: 3
    terminal_conditions:
        loss_stop: 1.0e-5
        eposides_limit: 20000

validation:
    problem:
        name: *name

testing:
    problem:
        name: *name
""",
    "configs/thalnet/sequential_pixel_mnist.yaml": """\
# Problem parameters:
training:
    problem:
        name: &name SequentialPixelMNIST
        batch_size: &bs 64
        index: [0, 54999]
        use_train_data: True
        root_dir: &dir '{data}/mnist'
    optimizer:
        name: Adam
        lr: 0.005
    terminal_conditions:
        loss_stop: 0.0001
        episode_limit: 100000

validation:
    problem:
        name: *name
        batch_size: *bs
        index: [55000, 59999]
        use_train_data: True
        root_dir: *dir

testing:
    problem:
        name: *name
        batch_size: *bs
        index: [0, 9999]
        use_train_data: False
        root_dir: *dir

# Model parameters:
model:
    name: ThalNetModel
    # Controller parameters.
    context_input_size: 32
    input_size: 1  # row_size
    output_size: 10 # number of classes
    center_size_per_module: 32
    num_modules: 4
""",
    "configs/vision/lenet5_mnist.yaml": """\
# Training parameters:
training:
  problem:
    name: &name MNIST
    batch_size: 64
    use_train_data: True
    mnist_folder: &folder '{data}/mnist'
    resize: [32, 32]
  # Use sampler that operates on a subset.
  sampler:
    name: SubsetRandomSampler
    indices: [0, 55000]
  # optimizer parameters:
  optimizer:
    name: Adam
    lr: 0.01
  terminal_conditions:
    epochs_limit: 5

# Validation parameters:
validation:
  partial_validation_interval: 100
  problem:
    name: *name
    batch_size: 64
    use_train_data: True
    mnist_folder: *folder
    resize: [32, 32]
  sampler:
    name: SubsetRandomSampler
    indices: [55000, 60000]

# Testing parameters:
testing:
  problem:
    name: *name
    batch_size: 10000
    use_train_data: False
    mnist_folder: *folder
    resize: [32, 32]

# Model parameters:
model:
    name: LeNet5
""",
    "configs/vision/simplecnn_mnist_t10k.yaml": """\
# SimpleConvNet on the 10,000 test digits of MNIST only: 8,000 to train, 1,000 to validate, 1,000 to test.
training:
    seed_numpy: 4354
    seed_torch: 2452
    problem:
        name: &name MNIST
        batch_size: &b 64
        data_folder: &folder '{data}/mnist'
        use_train_data: False
        resize: [32, 32]
    sampler:
        name: SubsetRandomSampler
        indices: '[0 8000]'
    dataloader:
        shuffle: True
        num_workers: 0
    optimizer:
        name: Adam
        lr: 0.001
    terminal_conditions:
        loss_stop: 1.0e-2
        epoch_limit: 2

validation:
    problem:
        name: *name
        batch_size: 250
        data_folder: *folder
        use_train_data: False
        resize: [32, 32]
    sampler:
        name: SubsetRandomSampler
        indices: [8000, 9000]

testing:
    problem:
        name: *name
        batch_size: 250
        data_folder: *folder
        use_train_data: False
        resize: [32, 32]
    sampler:
        name: SubsetRandomSampler
        indices: [9000, 10000]

model:
    name: SimpleConvNet
    conv1:
        out_channels: 6
        kernel_size: 5
        stride: 1
        padding: 0
    conv2:
        out_channels: 16
        kernel_size: 5
        stride: 1
        padding: 0
    maxpool1:
        kernel_size: 2
    maxpool2:
        kernel_size: 2
""",
    "configs/vqa_baselines/cnn_lstm_sort_of_clevr.yaml": """\
# Load the following (default) configs first.
default_configs: configs/vqa_baselines/default_sort_of_clevr.yaml

# Model parameters:
model:
    name: CNN_LSTM
    use_question_encoding: True
    lstm:
        hidden_size: 64
        num_layers: 1
        bidirectional: False
        dropout: 0
    classifier:
        nb_hidden_nodes: 256
""",
    "configs/vqa_baselines/default_sort_of_clevr.yaml": """\
training:
    # Problem parameters:
    problem:
        name: &name SortOfCLEVR
        batch_size: 64
        data_folder: &folder 'data/sort-of-clevr/'
        split: 'train'
        dataset_size: 2800
        img_size: 64
        regenerate: False
    # Set optimizer.
    optimizer:
        name: Adam
        lr: 0.005
    # Optional parameter, its presence results in clipping gradient to a range (-gradient_clipping, gradient_clipping)
    gradient_clipping: 10
    # Terminal condition parameters:
    terminal_conditions:
        loss_stop: 0.0001
        epoch_limit: 20

validation:
    problem:
        name: *name
        batch_size: 64
        data_folder: *folder
        split: 'val'
        dataset_size: 560
        img_size: 64
        regenerate: False

testing:
    problem:
        name: *name
        batch_size: 64
        data_folder: *folder
        split: 'test'
        dataset_size: 560
        img_size: 64
        regenerate: False
""",
    "configs/vqa_baselines/san_resnet_sort_of_clevr.yaml": """\
# Load the following (default) configs first.
default_configs: configs/vqa_baselines/default_sort_of_clevr.yaml

# Model parameters:
model:
    name: StackedAttentionNetwork
    use_pretrained_cnn: True
    pretrained_cnn:
        name: 'resnet18'
        num_layers: 2
    lstm:
        hidden_size: 64
        num_layers: 1
        bidirectional: False
        dropout: 0
    attention_layer:
        nb_nodes: 128
    classifier:
        nb_hidden_nodes: 256
""",
    "configs/vqa_baselines/san_sort_of_clevr.yaml": """\
# Load the following (default) configs first.
default_configs: configs/vqa_baselines/default_sort_of_clevr.yaml

# Model parameters:
model:
    name: MultiHopsStackedAttentionNetwork
    use_pretrained_cnn: False
    pretrained_cnn:
        name: 'resnet18'
        num_layers: 2
    default_nb_hops: 2
    lstm:
        hidden_size: 64
        num_layers: 1
        bidirectional: False
        dropout: 0
    attention_layer:
        nb_nodes: 128
    classifier:
        nb_hidden_nodes: 256
""",
}


def write_originals(root: Path, data: Path) -> Path:
    """Write the original-format configs under ``root`` (the directory the original would have run in), their data
    folders under ``data`` (where the original's users kept their datasets)."""
    for name in ORIGINAL_CONFIGS:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(original_text(name, data))
    return root


def original_text(name: str, data: Path) -> str:
    """The text of the original-format config ``name``, its data folders under ``data``."""
    return ORIGINAL_CONFIGS[name].replace("{data}", str(data))
