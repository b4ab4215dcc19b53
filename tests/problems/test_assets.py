"""Dataset assets: one in-memory copy per file, per-batch transforms, dataset seeds, cache files, vocabularies."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from miprometheus import registry
from miprometheus.data import DataDefinition
from miprometheus.errors import ConfigError, DataError
from miprometheus.models.model import Model
from miprometheus.params import param
from miprometheus.problems import assets, cache, dataset_seeding, image_transforms, shared_arrays
from miprometheus.problems.image_to_class.mnist import MNIST
from miprometheus.problems.problem import Problem, ProblemParams
from miprometheus.problems.vocabulary import EOS, PAD, SOS, UNK, Vocabulary
from miprometheus.statistics import StatisticDefinition, mean_of
from tests.conftest import ROOT, SHARED_MNIST
from tests.problems.image_to_class.test_mnist import write_split

needs_real_mnist = pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                      reason=f"real MNIST test files not found in {SHARED_MNIST}")


def old_resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """How MNIST resized a whole split at load before per-batch transforms (the values must not change)."""
    return F.interpolate(pixels.float() / 255, size=size, mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


def mnist(root: Path, **overrides) -> MNIST:
    values = {"batch_size": 4, "data_folder": str(root), "download": False, "use_train_data": False}
    values.update(overrides)
    return MNIST(MNIST.Params(**values))


def batches(problem: MNIST, count: int, batch_size: int) -> torch.Tensor:
    return torch.cat([problem.collate_fn([problem[i] for i in range(start, min(start + batch_size, count))])["images"]
                      for start in range(0, count, batch_size)])


# --- one in-memory copy per file ---------------------------------------------------------------------------
def test_splits_reading_one_file_share_one_uint8_copy(tmp_path):
    write_split(tmp_path, False, 6, compressed=True)
    train, valid, test = (mnist(tmp_path, resize=size) for size in ([32, 32], None, [16, 16]))
    assert train.images is valid.images is test.images and train.targets is test.targets
    assert train.images.dtype == torch.uint8 and train.images.shape == (6, 1, 28, 28)
    assert train.collate_fn([train[0]])["images"].shape == (1, 1, 32, 32)
    assert valid.collate_fn([valid[0]])["images"].shape == (1, 1, 28, 28)


def test_the_cache_frees_a_file_once_no_split_uses_it(tmp_path):
    write_split(tmp_path, False, 4, compressed=False)
    before = shared_arrays.cached_count()
    problem = mnist(tmp_path)
    assert shared_arrays.cached_count() == before + 2  # images and labels
    del problem
    gc.collect()
    assert shared_arrays.cached_count() == before


def test_a_rewritten_file_is_loaded_again(tmp_path):
    write_split(tmp_path, False, 4, compressed=False)
    first = mnist(tmp_path)
    write_split(tmp_path, False, 5, compressed=False)  # other size and mtime: new content
    second = mnist(tmp_path)
    assert len(first) == 4 and len(second) == 5 and first.images is not second.images


def test_shared_asset_loads_once_and_needs_weakly_referenceable_values(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x01\x02\x03")
    calls = []

    def load(p: Path) -> torch.Tensor:
        calls.append(p)
        return torch.tensor(list(p.read_bytes()), dtype=torch.uint8)

    one, two = shared_arrays.shared_asset(path, load), shared_arrays.shared_asset(str(path), load)
    assert one is two and len(calls) == 1
    other = shared_arrays.shared_asset(path, load, "another view")  # a different key: loaded again
    assert other is not one and len(calls) == 2
    held = shared_arrays.shared_asset(path, lambda p: shared_arrays.Arrays(raw=torch.zeros(2)))
    assert isinstance(held, dict) and "raw" in held
    with pytest.raises(TypeError, match="weakly referenced"):
        shared_arrays.shared_asset(path, lambda p: {"plain": "dict"})
    with pytest.raises(DataError, match="missing.bin"):
        shared_arrays.shared_asset(tmp_path / "missing.bin", load)


# --- per-batch conversion gives what the model saw before ------------------------------------------------
@pytest.mark.parametrize("size", [None, (32, 32), (20, 35), (64, 64)])
def test_per_batch_resize_equals_the_old_whole_split_resize(tmp_path, size):
    write_split(tmp_path, False, 7, compressed=False)
    problem = mnist(tmp_path, resize=list(size) if size else None)
    pixels = problem.images
    expected = pixels.float() / 255 if size is None else old_resize(pixels, size)
    got = batches(problem, 7, 3)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@needs_real_mnist
@pytest.mark.parametrize("size", [(32, 32), (224, 224)])
def test_real_mnist_batches_equal_the_old_resize(size):
    problem = mnist(SHARED_MNIST, resize=list(size), batch_size=64)
    got = batches(problem, 130, 64)
    assert torch.allclose(got, old_resize(problem.images[:130], size), atol=1e-6, rtol=0)
    assert problem.default_values["height"] == size[0] and problem.output_definitions["images"].shape[-1] == size[1]


def test_normalisation_is_off_by_default_and_uses_the_published_values(tmp_path):
    write_split(tmp_path, False, 3, compressed=False)
    plain = batches(mnist(tmp_path), 3, 3)
    published = batches(mnist(tmp_path, normalize=True), 3, 3)
    assert torch.allclose(published, (plain - 0.1307) / 0.3081)
    own = batches(mnist(tmp_path, normalize=True, mean=0.5, std=0.25), 3, 3)
    assert torch.allclose(own, (plain - 0.5) / 0.25)
    assert "mean" in mnist(tmp_path, normalize=True).output_definitions["images"].description
    with pytest.raises(ConfigError, match="normalize"):
        mnist(tmp_path, mean=0.5)
    with pytest.raises(ConfigError, match="std"):
        mnist(tmp_path, normalize=True, std=0.0)


# --- image transforms ------------------------------------------------------------------------------------
def test_transforms_of_a_uint8_batch():
    pixels = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    images = image_transforms.to_float(pixels)
    assert images.dtype == torch.float32 and images.flatten().tolist() == pytest.approx([0, 1, 0.2, 0.4])
    rgb = image_transforms.grey_to_rgb(images)
    assert rgb.shape == (1, 3, 2, 2) and torch.equal(rgb[:, 2], images[:, 0])
    normalised = image_transforms.normalize(rgb, (0.0, 0.5, 1.0), (1.0, 0.5, 2.0))
    assert torch.allclose(normalised[0, :, 0, 1], torch.tensor([1.0, 1.0, 0.0]))
    assert image_transforms.resize(images, (2, 2)) is images  # already that size: no copy
    with pytest.raises(ValueError, match="one channel"):
        image_transforms.grey_to_rgb(rgb)


def test_random_crop_and_flip_are_drawn_from_the_given_generator():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    original = images.clone()
    crops = [image_transforms.random_crop(images, (8, 8), 2, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert crops[0].shape == (2, 3, 8, 8) and torch.equal(crops[0], crops[1])
    all_offsets = {tuple(image_transforms.random_crop(images, (8, 8), 2, torch.Generator().manual_seed(s))[0, 0, 0, :2]
                         .tolist()) for s in range(20)}
    assert len(all_offsets) > 3  # the offsets vary with the generator
    # the crop is a window of the zero-padded image
    padded = F.pad(images, (2, 2, 2, 2))
    windows = [padded[0, :, t:t + 8, u:u + 8] for t in range(5) for u in range(5)]
    assert any(torch.equal(crops[0][0], w) for w in windows)
    torch.manual_seed(0)
    flipped = image_transforms.random_horizontal_flip(images, torch.Generator().manual_seed(1), probability=1.0)
    assert torch.equal(flipped, images.flip(-1))
    assert image_transforms.random_horizontal_flip(images, torch.Generator(), probability=0.0) is images
    assert torch.equal(images, original)  # inputs are never changed in place (the pixels are shared)
    with pytest.raises(ValueError, match="does not fit"):
        image_transforms.random_crop(images, (16, 16), 2, torch.Generator())


# --- dataset-defining randomness ------------------------------------------------------------------------
def test_dataset_generator_ignores_the_run_seed():
    torch.manual_seed(1)
    first = torch.randperm(784, generator=dataset_seeding.dataset_generator(42, "permutation"))
    torch.manual_seed(2)
    torch.rand(10)
    second = torch.randperm(784, generator=dataset_seeding.dataset_generator(42, "permutation"))
    assert torch.equal(first, second)
    assert not torch.equal(first, torch.randperm(784, generator=dataset_seeding.dataset_generator(43, "permutation")))
    assert not torch.equal(first, torch.randperm(784, generator=dataset_seeding.dataset_generator(42, "scenes")))


# --- cache files ------------------------------------------------------------------------------------------
def test_cache_key_is_canonical_and_covers_params_and_version(tmp_path):
    a = cache.cache_path(tmp_path, "scenes", {"size": 10, "dataset_seed": 1}, 1)
    assert a == cache.cache_path(tmp_path, "scenes", {"dataset_seed": 1, "size": 10}, 1)
    assert a != cache.cache_path(tmp_path, "scenes", {"size": 11, "dataset_seed": 1}, 1)
    assert a != cache.cache_path(tmp_path, "scenes", {"size": 10, "dataset_seed": 1}, 2)
    assert a.name.startswith("scenes-") and a.suffix == ".pt"


def test_cache_builds_once_then_reads_and_regenerates_on_request(tmp_path):
    builds = []

    def build():
        builds.append(1)
        return {"images": torch.full((2, 3), len(builds), dtype=torch.uint8), "questions": ["a?", "b?"]}

    params = {"size": 2, "dataset_seed": 7}
    first = cache.cached_dataset(tmp_path, "scenes", params, 1, build)
    again = cache.cached_dataset(tmp_path, "scenes", params, 1, build)
    assert len(builds) == 1 and torch.equal(first["images"], again["images"]) and again["questions"] == ["a?", "b?"]
    fresh = cache.cached_dataset(tmp_path, "scenes", params, 1, build, regenerate=True)
    assert len(builds) == 2 and int(fresh["images"][0, 0]) == 2
    assert int(cache.cached_dataset(tmp_path, "scenes", params, 1, build)["images"][0, 0]) == 2
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_a_corrupt_cache_file_is_rebuilt_or_refused(tmp_path, monkeypatch):
    path = cache.cache_path(tmp_path, "scenes", {"n": 1}, 1)
    path.write_bytes(b"not a torch file")
    assert cache.cached_dataset(tmp_path, "scenes", {"n": 1}, 1, lambda: {"x": 1}) == {"x": 1}
    assert cache.cached_dataset(tmp_path, "scenes", {"n": 1}, 1, lambda: pytest.fail("rebuilt")) == {"x": 1}
    # a file of other content under this name (a hash collision, a hand-copied file) is not used
    other = cache.cache_path(tmp_path, "scenes", {"n": 2}, 1)
    os.replace(path, other)
    assert cache.cached_dataset(tmp_path, "scenes", {"n": 2}, 1, lambda: {"x": 2}) == {"x": 2}
    path.write_bytes(b"garbage")
    monkeypatch.setattr(cache.os, "access", lambda *args: False)  # as if the folder were read-only
    with pytest.raises(DataError, match="corrupt.*not writable"):
        cache.cached_dataset(tmp_path, "scenes", {"n": 1}, 1, lambda: {"x": 1})


CONCURRENT_CHILD = """
import sys, time, torch
from pathlib import Path
from miprometheus.problems.cache import cached_dataset
folder, me = Path(sys.argv[1]), sys.argv[2]
def wait_for(name):
    while not (folder / name).exists():
        time.sleep(0.01)
def build(phase):
    with open(folder / "builds.log", "a") as log:
        log.write(phase + "\\n")
    time.sleep(1.0)  # long enough for the others to be waiting on the lock
    return {"values": torch.arange(5) * (2 if phase == "regenerate" else 1)}
for phase in ("first", "regenerate"):
    (folder / f"ready-{phase}-{me}").touch()
    wait_for(f"go-{phase}")
    data = cached_dataset(folder / "cache", "scenes", {"size": 5}, 1, lambda: build(phase),
                          regenerate=phase == "regenerate")
    print(data["values"].tolist())
"""


@pytest.mark.slow
def test_concurrent_experiments_build_a_cache_once(tmp_path):
    """Several processes ask for one cache at the same moment: one builds, the others wait and read it;
    the same when all of them are set to regenerate an existing file."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CONCURRENT_CHILD))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(i)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env) for i in range(3)]
    deadline = time.monotonic() + 60
    for phase in ("first", "regenerate"):
        while len(list(tmp_path.glob(f"ready-{phase}-*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        (tmp_path / f"go-{phase}").touch()  # all three ask at once
    outputs = [child.communicate(timeout=60) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    assert [out.split() for out, _ in outputs] == [["[0,", "1,", "2,", "3,", "4]", "[0,", "2,", "4,", "6,", "8]"]] * 3
    assert (tmp_path / "builds.log").read_text().split() == ["first", "regenerate"]


# --- vocabularies ---------------------------------------------------------------------------------------
def test_vocabulary_indices_specials_and_unknown_words():
    vocabulary = Vocabulary.build([["the", "cat", "sat"], ["the", "dog"], ["a", "cat"]])
    assert vocabulary.tokens[:2] == [PAD, UNK] and vocabulary.pad_index == 0 and vocabulary.unk_index == 1
    assert vocabulary.tokens[2:] == ["cat", "the", "a", "dog", "sat"]  # most frequent first, ties by alphabet
    assert vocabulary.encode(["the", "zebra", "cat"]) == [3, 1, 2]
    assert vocabulary.decode([3, 1, 0, 0]) == ["the", UNK]
    with pytest.raises(KeyError, match="sos"):
        vocabulary.encode(["the"], add_sos_eos=True)
    seq = Vocabulary.build([["b", "a", "a"]], sequence_tokens=True, min_count=2)
    assert seq.tokens == [PAD, UNK, SOS, EOS, "a"] and seq.encode(["a", "b"], add_sos_eos=True) == [2, 4, 1, 3]
    assert Vocabulary.build([["x", "y", "y", "z"]], max_size=1).tokens == [PAD, UNK, "y"]
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


def test_vocabulary_file_round_trip_and_malformed_files(tmp_path):
    vocabulary = Vocabulary.build([["hello", "world"]], sequence_tokens=True)
    vocabulary.save(tmp_path / "vocabulary.json")
    assert Vocabulary.load(tmp_path / "vocabulary.json") == vocabulary
    assets.write_assets_file(tmp_path / "assets.json", "Words", {"vocabulary": vocabulary.to_dict()})
    assert Vocabulary.load(tmp_path / "assets.json") == vocabulary  # an experiment's assets.json works too
    bad = {
        "not_json.json": "{tokens: [",
        "no_marker.json": json.dumps({"tokens": [PAD, UNK]}),
        "no_specials.json": json.dumps({"format": "miprometheus-vocabulary", "version": 1, "tokens": ["a", "b"]}),
        "duplicates.json": json.dumps({"format": "miprometheus-vocabulary", "version": 1,
                                       "tokens": [PAD, UNK, "a", "a"]}),
        "future.json": json.dumps({"format": "miprometheus-vocabulary", "version": 99, "tokens": [PAD, UNK]}),
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=name):
            Vocabulary.load(tmp_path / name)
    with pytest.raises(DataError, match="answers"):
        Vocabulary.load(tmp_path / "assets.json", name="answers")
    with pytest.raises(DataError, match="cannot read"):
        Vocabulary.load(tmp_path / "absent.json")


# --- the framework: assets of the training split, saved, used by validation, testing and transfer -------
class TinyWords(Problem):
    """Tiny sentences, class 1 when they are positive; the vocabulary comes from the training split."""

    uses_assets = True

    @dataclasses.dataclass(kw_only=True)
    class Params(ProblemParams):
        data_file: str = param(doc="one 'label<TAB>words' line per sample", path=True)
        vocabulary_file: str | None = param(None, "a vocabulary (or an experiment's assets.json) to use "
                                                  "instead of building one from this training split", path=True)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        lines = Path(params.data_file).read_text().splitlines()
        self.samples = [(int(label), words.split()) for label, words in (line.split("\t") for line in lines)]
        self.prediction_definitions = {"predictions": DataDefinition((-1, 2), "float32", "class logits")}
        self.statistic_definitions = {"unk": StatisticDefinition("mean", "fraction of unknown words")}

    def build_assets(self) -> dict:
        if self.params.vocabulary_file:
            vocabulary = Vocabulary.load(self.params.vocabulary_file)
        else:
            vocabulary = Vocabulary.build(words for _, words in self.samples)
        return {"vocabulary": vocabulary.to_dict()}

    def use_assets(self, assets: dict) -> None:
        self.vocabulary = Vocabulary.from_dict(assets["vocabulary"])
        self.default_values = {"vocabulary_size": len(self.vocabulary), "num_classes": 2}
        self.output_definitions = {"words": DataDefinition((-1, -1), "int64", "word indices, 0-padded"),
                                   "targets": DataDefinition((-1,), "int64", "class")}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple:
        label, words = self.samples[index]
        return torch.tensor(self.vocabulary.encode(words)), label

    def collate_fn(self, samples: list) -> dict:
        words = torch.nn.utils.rnn.pad_sequence([s[0] for s in samples], batch_first=True, padding_value=0)
        return {"words": words, "targets": torch.tensor([s[1] for s in samples])}

    def loss(self, batch: dict, predictions: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(predictions, batch["targets"])

    def statistics(self, batch: dict, predictions: torch.Tensor) -> dict:
        words = batch["words"]
        return {"unk": mean_of((words == 1).sum(), (words != 0).sum())}


class TinyBag(Model):
    """Mean of word embeddings, then a linear layer."""

    @dataclasses.dataclass
    class Params:
        vocabulary_size: int = param(doc="number of tokens", from_problem=True)
        num_classes: int = param(doc="number of classes", from_problem=True)

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.embedding = torch.nn.EmbeddingBag(params.vocabulary_size, 8, mode="mean", padding_idx=0)
        self.output = torch.nn.Linear(8, params.num_classes)
        self.input_definitions = {"words": DataDefinition((-1, -1), "int64", "word indices")}
        self.output_definitions = {"predictions": DataDefinition((-1, params.num_classes), "float32", "logits")}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.output(self.embedding(batch["words"]))


TRAIN = ["1\tgood movie", "0\tbad movie", "1\tthe movie was good", "0\tthe movie was bad", "1\tgreat fun",
         "0\tawful plot", "1\tgood fun", "0\tbad plot"]
VALID = ["1\tsuperb movie", "0\tterrible movie", "1\tgood film", "0\tbad film"]  # superb, terrible, film: unseen
TEST = ["1\ta truly wonderful good movie", "0\ta truly dreadful bad movie", "1\tgreat acting", "0\tawful acting"]
WORDS_CONFIG = """
training:
  problem: {name: TinyWords, data_file: train.tsv, batch_size: 4}
  optimizer: {name: Adam, lr: 0.05}
  terminal_conditions: {epoch_limit: 3}
  seed: 3
validation:
  problem: {name: TinyWords, data_file: valid.tsv, batch_size: 4}
testing:
  problem: {name: TinyWords, data_file: test.tsv, batch_size: 4}
model: {name: TinyBag}
"""


@pytest.fixture
def word_experiment(tmp_path):
    """The tiny word problem and model, registered for this test only, and their config."""
    before = {kind: dict(names) for kind, names in registry._registered.items()}
    registry.register_problem(TinyWords)
    registry.register_model(TinyBag)
    for name, lines in (("train.tsv", TRAIN), ("valid.tsv", VALID), ("test.tsv", TEST)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    (tmp_path / "words.yaml").write_text(WORDS_CONFIG)
    yield tmp_path
    for kind, names in before.items():
        registry._registered[kind].clear()
        registry._registered[kind].update(names)


def _options(tmp_path: Path):
    from miprometheus.workers.run_folder import RunOptions

    return RunOptions(expdir=tmp_path / "experiments", progress=False, command_line=["mip", "train"])


def _agg(folder: Path, name: str) -> dict:
    import csv

    with open(folder / name) as handle:
        return list(csv.DictReader(handle))


def test_vocabulary_of_the_training_split_is_saved_and_used_by_validation_and_mip_test(word_experiment):
    from miprometheus.layout import ASSETS, TESTING_CONFIG, TRAINING_CONFIG, VALIDATION_CSV
    from miprometheus.workers import runs

    tmp = word_experiment
    result = runs.train([str(tmp / "words.yaml")], [], _options(tmp))
    folder = result.folder
    training_vocabulary = Vocabulary.build(line.split("\t")[1].split() for line in TRAIN)
    saved = Vocabulary.load(folder / ASSETS)
    assert saved == training_vocabulary and "superb" not in saved and "dreadful" not in saved
    recorded = yaml.safe_load((folder / TRAINING_CONFIG).read_text())["model"]
    assert recorded == {"name": "TinyBag", "vocabulary_size": len(training_vocabulary), "num_classes": 2}
    validation = _agg(folder, VALIDATION_CSV)
    assert float(validation[-1]["unk"]) == pytest.approx(4 / 8)  # superb, terrible, film x2: UNK

    test_folder, agg = runs.test(folder, [], _options(tmp))
    own_vocabulary = Vocabulary.build(line.split("\t")[1].split() for line in TEST)
    assert len(own_vocabulary) != len(training_vocabulary)  # a vocabulary of its own would not fit the weights
    assert yaml.safe_load((test_folder / TESTING_CONFIG).read_text())["model"]["vocabulary_size"] == len(saved)
    assert agg["unk"] == pytest.approx(8 / 14)  # a, truly (x2 each), wonderful, dreadful, acting (x2) are UNK

    (folder / ASSETS).unlink()
    with pytest.raises(DataError, match="assets.json"):
        runs.test(folder, [], _options(tmp))


def test_a_transfer_run_uses_the_given_vocabulary_file(word_experiment):
    from miprometheus.layout import ASSETS, TRAINING_CSV
    from miprometheus.workers import runs

    tmp = word_experiment
    first = runs.train([str(tmp / "words.yaml")], [], _options(tmp)).folder
    (tmp / "other.tsv").write_text("1\tsuperb movie\n0\tterrible movie\n")
    second = runs.train([str(tmp / "words.yaml")], [f"training.problem.data_file={tmp / 'other.tsv'}",
                                                    f"training.problem.vocabulary_file={first / ASSETS}"],
                        _options(tmp)).folder
    assert Vocabulary.load(second / ASSETS) == Vocabulary.load(first / ASSETS)
    assert float(_agg(second, TRAINING_CSV)[0]["unk"]) == pytest.approx(0.5)  # its own new words are UNK

    # a resumed run keeps the vocabulary it saved, even when its training data changed meanwhile
    (tmp / "train.tsv").write_text("\n".join([*TRAIN, "1\tmarvellous"]) + "\n")
    runs.train([], [], _options(tmp), resume=first)
    assert "marvellous" not in Vocabulary.load(first / ASSETS)


def test_mip_check_builds_the_vocabulary_from_the_training_split(word_experiment):
    from miprometheus.workers import runs

    _, report, _ = runs.check([str(word_experiment / "words.yaml")], [])
    assert len(report) == 3 and all("fits problem TinyWords" in line for line in report)
