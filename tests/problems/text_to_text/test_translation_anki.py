"""TranslationAnki (problems/text_to_text/) on small files in the official Anki format: two and three columns,
inside the zip or extracted, the reference preprocessing, filters, the seeded split, vocabularies from the
training split, BLEU exact over a split, and malformed files stopping with the file, the line and the cause."""

from __future__ import annotations

import io
import urllib.error
import zipfile
from pathlib import Path

import pytest
import torch
from sacrebleu.metrics import BLEU

from miprometheus.errors import DataError
from miprometheus.problems.assets import apply_assets, build_training_assets
from miprometheus.problems.text_to_text import anki_format, synthetic_corpus
from miprometheus.problems.text_to_text.translation_anki import TranslationAnki, TranslationAnkiParams
from miprometheus.statistics import Aggregator, Measure
from tests.conftest import run_mip

ATTRIBUTION = "CC-BY 2.0 (France) Attribution: tatoeba.org #{0} (a) & #{1} (b)"
PAIRS = [("I am cold.", "J'ai froid."), ("I'm cold.", "J'ai froid."), ("He is tall.", "Il est grand."),
         ("She is happy!", "Elle est heureuse !"), ("We are late.", "Nous sommes en retard."),
         ("They are here.", "Ils sont là."), ("Go.", "Va !"), ("Who are you?", "Qui êtes-vous ?"),
         ("You are very, very, very, very, very kind to me.", "Vous êtes très, très, très, très, très gentil."),
         ("I am sad.", "Je suis triste."), ("He is sad.", "Il est triste."), ("She is cold.", "Elle a froid.")]


def three_columns(pairs=PAIRS) -> str:
    return "".join(f"{en}\t{fr}\t{ATTRIBUTION.format(2 * i, 2 * i + 1)}\n" for i, (en, fr) in enumerate(pairs))


def two_columns(pairs=PAIRS) -> str:
    return "".join(f"{en}\t{fr}\n" for en, fr in pairs)


def write_zip(folder: Path, text: str | bytes, language: str = "fra", member: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{language}-eng.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member or f"{language}.txt", text if isinstance(text, bytes) else text.encode("utf-8"))
        archive.writestr("_about.txt", "about")
    return path


def problem(folder: Path, **values) -> TranslationAnki:
    values = {"data_folder": str(folder), "download": False, "max_sequence_length": None, "batch_size": 4,
              "validation_fraction": 0.0, "test_fraction": 0.0, **values}
    return TranslationAnki(TranslationAnkiParams(**values))


def trained(folder: Path, **values) -> TranslationAnki:
    train = problem(folder, **values)
    apply_assets(train, build_training_assets(train))
    return train


# --- preprocessing ---------------------------------------------------------------------------------------------
def test_the_reference_normalisation_of_the_spec():
    assert anki_format.normalize("J'ai froid.") == "j ai froid ."
    assert anki_format.normalize("I'm cold.") == "i m cold ."
    assert anki_format.normalize("  Qui êtes-vous ?") == "qui etes vous ?"
    assert anki_format.normalize("Ça, c'est l'été!") == "ca c est l ete !"
    assert anki_format.detokenize(["i", "am", "cold", "."]) == "i am cold."


@pytest.mark.parametrize("layout", ["three columns in the zip", "two columns in the zip", "extracted text"])
def test_the_official_layouts_are_read_with_the_first_two_columns(tmp_path, layout):
    if layout == "extracted text":
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / "fra.txt").write_text(three_columns(), encoding="utf-8")
    else:
        write_zip(tmp_path, three_columns() if layout.startswith("three") else two_columns())
    p = trained(tmp_path)
    assert len(p) == len(PAIRS)
    sources = {" ".join(t) for t in p.source_tokens}
    targets = {" ".join(t) for t in p.target_tokens}
    assert "i am cold ." in sources and "j ai froid ." in targets
    assert not any("tatoeba" in t or "attribution" in t for t in sources | targets)


def test_reverse_translates_into_english(tmp_path):
    write_zip(tmp_path, three_columns())
    p = trained(tmp_path, reverse=True, split="all")
    index = [" ".join(t) for t in p.source_tokens].index("il est grand .")
    assert " ".join(p.target_tokens[index]) == "he is tall ."


def test_the_length_and_prefix_filters(tmp_path):
    write_zip(tmp_path, three_columns())
    assert len(problem(tmp_path, max_sequence_length=10)) == len(PAIRS) - 1  # the "very, very" pair is too long
    kept = problem(tmp_path, max_sequence_length=10, eng_prefixes=list(anki_format.TUTORIAL_PREFIXES))
    sources = [" ".join(t) for t in kept.source_tokens]
    assert "i m cold ." in sources  # passes the prefix "i m "
    assert "go ." not in sources and "who are you ?" not in sources
    assert len(sources) == 9


# --- malformed files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    (three_columns()[:40] + "\n" + "Hello there\n" + three_columns(),
     r"fra-eng.zip:fra.txt: line 2: 1 tab-separated column\(s\), expected 2 .* or 3"),
    (three_columns(PAIRS[:3]) + "a\tb\tc\td\n", r"fra.txt: line 4: 4 tab-separated column"),
    ("I am cold.\t\n", r"fra.txt: line 1: the other-language sentence is empty"),
    ("", r"fra.txt: the file holds no sentence pairs \(it is empty\)"),
    ("\n\n  \n", r"the file holds no sentence pairs"),
    (three_columns(PAIRS[:2]).encode("utf-8") + "Il était là.\tHe was there.\n".encode("latin-1"),
     r"fra.txt: line 3: not UTF-8 text \(byte 0xe9 at column 4"),
])
def test_a_malformed_file_is_a_data_error_naming_the_file_the_line_and_the_cause(tmp_path, content, message):
    write_zip(tmp_path, content)
    with pytest.raises(DataError, match=message):
        problem(tmp_path)


def test_a_zip_without_the_text_and_a_file_that_is_no_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "fra-eng.zip", "w") as archive:
        archive.writestr("_about.txt", "about")
    with pytest.raises(DataError, match=r"fra-eng.zip: the archive holds no fra.txt \(it holds _about.txt\)"):
        problem(tmp_path)
    (tmp_path / "fra-eng.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="fra-eng.zip: not a zip archive"):
        problem(tmp_path)


def test_a_missing_corpus_names_the_download_or_the_offline_route(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"neither .*fra-eng.zip nor .*fra.txt exists, and downloading is disabled"):
        problem(tmp_path)

    def offline(url):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(anki_format, "fetch", offline)
    with pytest.raises(DataError, match=r"could not download http://www.manythings.org/anki/fra-eng.zip: .*no route "
                                        r"to host.*Offline, put the official fra-eng.zip"):
        problem(tmp_path, download=True)
    assert not (tmp_path / "fra-eng.zip").exists()


def test_a_download_is_checked_and_saved(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fra.txt", three_columns())
    seen = []
    monkeypatch.setattr(anki_format, "fetch", lambda url: seen.append(url) or buffer.getvalue())
    assert len(problem(tmp_path / "new", download=True)) == len(PAIRS)
    assert seen == ["http://www.manythings.org/anki/fra-eng.zip"] and (tmp_path / "new" / "fra-eng.zip").is_file()
    monkeypatch.setattr(anki_format, "fetch", lambda url: b"<html>blocked</html>")
    with pytest.raises(DataError, match="is not a zip archive .*not saved"):
        problem(tmp_path / "other", download=True)


def test_mip_check_stops_a_malformed_corpus_with_exit_2_and_the_line(tmp_path):
    write_zip(tmp_path / "data", three_columns(PAIRS[:4]) + "only one column\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"""
training:
  problem: {{name: TranslationAnki, data_folder: {tmp_path / 'data'}, download: false}}
  optimizer: {{name: Adam, lr: 0.001}}
  terminal_conditions: {{episode_limit: 1}}
model: {{name: AttentionEncoderDecoder}}
""")
    result = run_mip("check", config)
    assert result.returncode == 2, result.stderr
    assert "fra-eng.zip:fra.txt: line 5: 1 tab-separated column(s)" in result.stderr
    assert "Traceback" not in result.stderr


# --- split and vocabularies ------------------------------------------------------------------------------------
def letters(i: int) -> str:
    return "".join("abcdefghijklmnopqrstuvwxyz"[int(d)] for d in f"{i:03d}")  # digits are not kept by normalize


def corpus(n: int = 200) -> str:
    return "".join(f"I see the {w}{letters(i)}.\tJe vois le {w}{letters(i)}.\tattribution\n"
                   for i, w in zip(range(n), ["cat", "dog", "car", "book"] * n))


def test_the_split_depends_on_the_dataset_seed_only_and_the_splits_are_disjoint(tmp_path):
    write_zip(tmp_path, corpus())
    values = {"validation_fraction": 0.1, "test_fraction": 0.2}
    splits = {name: problem(tmp_path, split=name, **values) for name in ("training", "validation", "test")}
    sets = {name: {tuple(t) for t in p.source_tokens} for name, p in splits.items()}
    assert [len(p) for p in splits.values()] == [140, 20, 40]
    assert not (sets["training"] & sets["validation"]) and not (sets["training"] & sets["test"])
    assert len(sets["training"] | sets["validation"] | sets["test"]) == 200
    torch.manual_seed(123)  # the run's seed does not matter
    again = problem(tmp_path, split="test", **values)
    assert again.source_tokens == splits["test"].source_tokens
    other = problem(tmp_path, split="test", dataset_seed=1, **values)
    assert {tuple(t) for t in other.source_tokens} != sets["test"]


def test_vocabularies_come_from_the_training_split_and_unseen_words_are_unk(tmp_path):
    write_zip(tmp_path, corpus())
    values = {"validation_fraction": 0.1, "test_fraction": 0.2}
    train = problem(tmp_path, **values)
    assets = build_training_assets(train)
    test = problem(tmp_path, split="test", **values)
    apply_assets(train, assets)
    apply_assets(test, assets)
    assert test.default_values == train.default_values
    vocabulary = test.input_vocabulary
    assert vocabulary.tokens[:4] == ["<pad>", "<unk>", "<sos>", "<eos>"]
    batch = test.collate_fn(list(range(4)))
    # every test sentence's numbered noun is unseen in training: UNK, the rest known; each ends with EOS
    for row, length, text in zip(batch["inputs"], batch["inputs_length"], batch["inputs_text"]):
        words = text.split()
        assert row[int(length) - 1] == vocabulary.eos_index and (row[int(length):] == 0).all()
        assert row[words.index(words[3])] == vocabulary.unk_index
        assert row[0] == vocabulary.index["i"]
    assert batch["inputs"].shape[1] == int(batch["inputs_length"].max())
    assert test.default_values["sos_index"] == 2 and test.default_values["eos_index"] == 3


def test_vocabulary_from_another_run(tmp_path):
    from miprometheus.problems.assets import write_assets_file

    write_zip(tmp_path, three_columns())
    first = problem(tmp_path)
    write_assets_file(tmp_path / "assets.json", first.name, build_training_assets(first))
    second = problem(tmp_path, vocabulary_from=str(tmp_path), split="all", reverse=True)
    assert build_training_assets(second)["input_vocabulary"] == build_training_assets(first)["input_vocabulary"]
    with pytest.raises(DataError, match="no assets.json there"):
        build_training_assets(problem(tmp_path, vocabulary_from=str(tmp_path / "nowhere")))


# --- loss and statistics ---------------------------------------------------------------------------------------
def logits_for(tokens: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(tokens, size).float() * 20.0


def test_statistics_of_a_perfect_a_shorter_and_a_beam_output(tmp_path):
    write_zip(tmp_path, three_columns())
    p = trained(tmp_path)
    size = p.default_values["output_vocabulary_size"]
    batch = p.collate_fn([0, 1, 2, 3])
    perfect = logits_for(batch["targets"], size)
    stats = p.statistics(batch, perfect)
    assert stats["token_accuracy"].value == 1.0 and stats["sentence_accuracy"].value == 1.0
    assert stats["bleu"].value == 1.0  # not 1.0000000000000004
    assert p.loss(batch, perfect) < 1e-6
    assert p.loss_count(batch, perfect) == float(batch["targets_length"].sum())
    # one step shorter: the last target token of the longest targets is missing (a uniform guess, a wrong token)
    short = perfect[:, :-1]
    stats = p.statistics(batch, short)
    longest = int((batch["targets_length"] == batch["targets"].shape[1]).sum())
    assert stats["token_accuracy"] == Measure(float(batch["targets_length"].sum()) - longest,
                                              float(batch["targets_length"].sum()))
    assert p.loss(batch, short) > 0.1
    # longer: the extra steps are scored against PAD (ignored)
    assert p.loss(batch, torch.cat([perfect, perfect[:, :2]], dim=1)) < 1e-6
    # predicted_tokens win over the argmax (beam search's choice)
    wrong = batch["targets"].clone()
    wrong[:, 0] = p.output_vocabulary.unk_index
    stats = p.statistics({**batch, "predicted_tokens": wrong}, perfect)
    assert stats["sentence_accuracy"].value == 0.0 and stats["bleu"].value < 1.0


def test_corpus_bleu_over_a_split_equals_sacrebleu_on_all_its_sentences(tmp_path):
    write_zip(tmp_path, three_columns())
    p = trained(tmp_path)
    size = p.default_values["output_vocabulary_size"]
    generator = torch.Generator().manual_seed(0)
    aggregator = Aggregator(p.statistic_definitions)
    hypotheses, references = [], []
    for indices in ([0, 1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11]):
        batch = p.collate_fn(indices)
        tokens = batch["targets"].clone()
        noise = torch.rand(tokens.shape, generator=generator) < 0.3
        tokens[noise & (tokens > 3)] = 4  # some words replaced by the most frequent word
        predictions = logits_for(tokens, size)
        stats = p.statistics(batch, predictions)
        aggregator.add(len(indices), Measure(0.0, 1.0), stats)
        hypotheses += [anki_format.detokenize(w) for w in p.output_words(tokens)]
        references += [anki_format.detokenize(t.split()) for t in batch["targets_text"]]
    expected = BLEU(tokenize="13a", smooth_method="exp").corpus_score(hypotheses, [references]).score / 100
    assert 0.2 < expected < 0.95
    assert aggregator.result()["bleu"] == pytest.approx(expected, abs=1e-9)


def test_samples_and_the_attention_figure(tmp_path):
    from matplotlib.figure import Figure

    write_zip(tmp_path, three_columns())
    p = trained(tmp_path)
    batch = p.collate_fn([0, 1])
    predictions = logits_for(batch["targets"], p.default_values["output_vocabulary_size"])
    lines = p.describe_samples(batch, predictions)
    assert len(lines) == 2 and "reference: " in lines[0] and "output:    " in lines[0]
    assert lines[0].splitlines()[1].split(maxsplit=1)[1] == lines[0].splitlines()[2].split(maxsplit=1)[1]
    attention = torch.softmax(torch.randn(2, predictions.shape[1], batch["inputs"].shape[1]), dim=-1)
    assert isinstance(p.plot({**batch, "attention": attention}, 0, predictions), Figure)
    assert isinstance(p.plot(batch, 1, None), Figure)


# --- the synthetic corpus --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_synthetic_corpus_is_official_format_deterministic_and_holds_out_its_combinations(tmp_path):
    main, heldout = synthetic_corpus.write_synthetic_corpus(tmp_path / "a", pairs=600, heldout_pairs=100)
    synthetic_corpus.write_synthetic_corpus(tmp_path / "b", pairs=600, heldout_pairs=100)
    read = {}
    for path in (main, heldout):
        with zipfile.ZipFile(path) as archive:
            assert set(archive.namelist()) == {path.name.replace("-eng.zip", ".txt"), "_about.txt"}
            raw = archive.read(path.name.replace("-eng.zip", ".txt"))
        with zipfile.ZipFile(tmp_path / "b" / path.name) as again:
            assert again.read(path.name.replace("-eng.zip", ".txt")) == raw  # the same files every time
        lines = raw.decode("utf-8").splitlines()
        assert all(len(line.split("\t")) == 3 and "Attribution" in line.split("\t")[2] for line in lines)
        read[path.name] = anki_format.parse_pairs(raw, path.name)
    train, held = read["syn-eng.zip"], read["syn_heldout-eng.zip"]
    assert len(train) == 600 and len(held) == 100 and not {p[:2] for p in train} & {p[:2] for p in held}
    held_attributive, _ = synthetic_corpus.held_out_combinations()
    train_text = [anki_format.normalize(en) for en, _, _ in train]
    for adjective, noun in held_attributive:
        singular, plural = synthetic_corpus.NOUNS[noun][:2]
        assert not any(f" {adjective} {singular} " in f" {t} " or f" {adjective} {plural} " in f" {t} "
                       for t in train_text)
    assert any(fr.startswith("Elle n'est pas") for _, fr, _ in train + held)
    words = {w for t in train_text for w in t.split()}
    assert all(w in words for en, _, _ in held for w in anki_format.normalize(en).split())
    french = {w for _, fr, _ in train for w in anki_format.normalize(fr).split()}
    assert all(w in french for _, fr, _ in held for w in anki_format.normalize(fr).split())  # new pairs, no new word
    assert synthetic_corpus.unseen_words([p[:2] for p in held], [p[:2] for p in train]) == set()


@pytest.mark.slow
def test_every_feminine_form_comes_with_more_than_one_subject():
    # grammar v1's only feminine subject was "she": a held-out (she, angry) asked for a "fachee" never seen
    seen, held = synthetic_corpus.all_sentences()
    assert synthetic_corpus.unseen_words(held, seen) == set()
    assert sum(s.feminine for s in synthetic_corpus.SUBJECTS) >= 3
    assert ("My daughters are not very tired.", "Mes filles ne sont pas très fatiguées.") in seen + held
    assert ("Mary's not eating the red apples.", "Marie ne mange pas les pommes rouges.") in seen + held


@pytest.mark.slow
def test_a_corpus_of_an_older_grammar_is_rewritten_a_real_one_never(tmp_path):
    old = tmp_path / "syn-eng.zip"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("syn.txt", "She is angry.\tElle est fâchée.\tCC-BY 2.0 (France) Attribution: "
                                    "MI-Prometheus synthetic corpus #1 (grammar v1)\n")
    assert synthetic_corpus.written_by_older_grammar(old)
    p = problem(tmp_path, language="syn", synthetic=True, split="all")
    assert len(p) == 6000 and not synthetic_corpus.written_by_older_grammar(old)
    real = write_zip(tmp_path, "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM)\n")
    before = real.read_bytes()
    assert not synthetic_corpus.written_by_older_grammar(real)
    assert len(problem(tmp_path, language="fra", synthetic=True, split="all")) == 1
    assert real.read_bytes() == before


@pytest.mark.slow
def test_the_problem_writes_the_synthetic_corpus_when_missing(tmp_path):
    p = problem(tmp_path, language="syn", synthetic=True, split="all")
    assert len(p) == 6000 and (tmp_path / "syn_heldout-eng.zip").is_file()
    held = problem(tmp_path, language="syn_heldout", synthetic=True, split="all")
    assert len(held) == 1000
