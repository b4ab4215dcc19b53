"""A synthetic English -> French-like corpus in the official Anki format, with combinations held out of training.

Real Anki corpora cannot be downloaded everywhere (a CI machine, a cluster node without internet), so the
translation configs run on sentences from a small grammar, written exactly as manythings.org writes its files:
``syn-eng.zip`` holding ``syn.txt`` (and ``_about.txt``), UTF-8, three tab-separated columns (English, the other
language with its accents and apostrophes, an attribution), one pair per line. The reference preprocessing then
turns ``"Elle n'est pas très fatiguée."`` into ``elle n est pas tres fatiguee .`` as it would a real file.

The grammar makes translation more than word substitution:

* ``<subject> <be> [not] [very|really|too] <adjective>.`` -> ``<sujet> [ne] <être> [pas] [très|...] <adjectif>.``:
  the verb is conjugated, the negation wraps it (``n'`` before a vowel), the adjective agrees with the subject;
* ``<subject> <be> [not] <verb>ing the [<adjective>] <noun>[s].`` -> ``<sujet> [ne] <verbe> [pas] <le|la|les>
  [<adj>] <nom>[s] [<adj>].``: the article and the adjective take the noun's gender and number, colours follow
  the noun and size or age adjectives precede it, so the attention is not monotone;
* English contractions (``I'm``, ``she's``, ``they're``) appear beside the full forms, as in the real files;
* three subjects are nouns (``Mary``, ``my daughters``, ``my sons``), so that the feminine and the plural forms
  come with more than one subject and a held-out (subject, adjective) pair can be inferred from the others.

**Held-out combinations.** About 15 % of the (adjective, noun) pairs and of the (subject, predicate adjective)
pairs, chosen once by the seed, never occur in ``syn.txt``: every word of both sides does, in other combinations
(the choice is redrawn until it is so, and the written corpus is checked). They make ``syn_heldout-eng.zip``
(``syn_heldout.txt``), the test of compositional generalisation (a model must know a noun's gender from other
adjectives to make a held-out adjective agree with it, and an adjective's feminine form from other subjects).

Grammar version 1 had ``she`` as its only feminine subject: a held-out (she, adjective) pair asked for a
feminine form never seen (``fâchée``), and every model failed the same 3.2 % of the held-out test. A corpus
written by an older grammar is rewritten by TranslationAnki (the version is in each line's attribution).

``python -m miprometheus.problems.text_to_text.synthetic_corpus FOLDER`` writes both files;
TranslationAnki writes them itself when its file is missing and ``synthetic: true``.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from miprometheus.files import atomic_write

GRAMMAR_VERSION = 2
ATTRIBUTION = "CC-BY 2.0 (France) Attribution: MI-Prometheus synthetic corpus #{number} (grammar v{version})"


@dataclass(frozen=True)
class Subject:
    english: str      # "she"
    be: str           # "is"
    contracted: str | None   # "she's"; None: no contracted form
    french: str       # "elle"
    etre: str         # "est"
    person: str       # verb ending key: 1s, 2p, 3s, 1p, 3p
    feminine: bool
    plural: bool


SUBJECTS = (
    Subject("I", "am", "I'm", "je", "suis", "1s", False, False),
    Subject("you", "are", "you're", "vous", "êtes", "2p", False, True),
    Subject("he", "is", "he's", "il", "est", "3s", False, False),
    Subject("she", "is", "she's", "elle", "est", "3s", True, False),
    Subject("we", "are", "we're", "nous", "sommes", "1p", False, True),
    Subject("they", "are", "they're", "ils", "sont", "3p", False, True),
    Subject("Mary", "is", "Mary's", "Marie", "est", "3s", True, False),
    Subject("my daughters", "are", None, "mes filles", "sont", "3p", True, True),
    Subject("my sons", "are", None, "mes fils", "sont", "3p", False, True),
)

#: predicate adjectives: English -> French (masculine, feminine); plural adds s unless it ends in s or x
PREDICATES = {"happy": ("heureux", "heureuse"), "tired": ("fatigué", "fatiguée"), "ready": ("prêt", "prête"),
              "sad": ("triste", "triste"), "busy": ("occupé", "occupée"), "sick": ("malade", "malade"),
              "angry": ("fâché", "fâchée"), "calm": ("calme", "calme"), "small": ("petit", "petite"),
              "tall": ("grand", "grande"), "late": ("en retard", "en retard")}
ADVERBS = {"": "", "very": "très", "really": "vraiment", "too": "trop"}

#: -ing form -> the French verb's stem and its "nous" stem
VERBS = {"eating": ("mang", "mange"), "watching": ("regard", "regard"), "washing": ("lav", "lav"),
         "carrying": ("port", "port"), "drawing": ("dessin", "dessin"), "looking for": ("cherch", "cherch"),
         "keeping": ("gard", "gard"), "pushing": ("pouss", "pouss")}
ENDINGS = {"1s": "e", "2p": "ez", "3s": "e", "1p": "ons", "3p": "ent"}

#: nouns: English singular, English plural, French singular, French plural, feminine
NOUNS = (("apple", "apples", "pomme", "pommes", True), ("car", "cars", "voiture", "voitures", True),
         ("house", "houses", "maison", "maisons", True), ("door", "doors", "porte", "portes", True),
         ("table", "tables", "table", "tables", True), ("chair", "chairs", "chaise", "chaises", True),
         ("box", "boxes", "boîte", "boîtes", True), ("shirt", "shirts", "chemise", "chemises", True),
         ("book", "books", "livre", "livres", False), ("dog", "dogs", "chien", "chiens", False),
         ("cat", "cats", "chat", "chats", False), ("hat", "hats", "chapeau", "chapeaux", False),
         ("bike", "bikes", "vélo", "vélos", False), ("cake", "cakes", "gâteau", "gâteaux", False),
         ("glass", "glasses", "verre", "verres", False), ("boat", "boats", "bateau", "bateaux", False))

#: attributive adjectives: English -> (masculine, feminine, masculine plural, before the noun)
ADJECTIVES = {"red": ("rouge", "rouge", "rouges", False), "green": ("vert", "verte", "verts", False),
              "blue": ("bleu", "bleue", "bleus", False), "black": ("noir", "noire", "noirs", False),
              "white": ("blanc", "blanche", "blancs", False), "small": ("petit", "petite", "petits", True),
              "big": ("grand", "grande", "grands", True), "old": ("vieux", "vieille", "vieux", True),
              "new": ("nouveau", "nouvelle", "nouveaux", True)}


def _plural(word: str) -> str:
    return word if word.endswith(("s", "x")) or word == "en retard" else word + "s"


def _agree(masculine: str, feminine: str, is_feminine: bool, is_plural: bool) -> str:
    word = feminine if is_feminine else masculine
    return _plural(word) if is_plural else word


def _negated(verb: str, negative: bool) -> list[str]:
    if not negative:
        return [verb]
    return ["n'" + verb if verb[0] in "aeiouéêh" else "ne " + verb, "pas"]


def _sentence(words: list[str]) -> str:
    text = " ".join(w for w in words if w).replace("n' ", "n'")
    return text[0].upper() + text[1:] + "."


def _english_subject(subject: Subject, contracted: bool) -> list[str]:
    return [subject.contracted] if contracted else [subject.english, subject.be]


def predicate_pair(subject: Subject, negative: bool, adverb: str, adjective: str, contracted: bool) -> tuple[str, str]:
    """``She is not very tired.`` / ``Elle n'est pas très fatiguée.``"""
    english = _english_subject(subject, contracted) + (["not"] if negative else []) + [adverb, adjective]
    masculine, feminine = PREDICATES[adjective]
    french_verb = " ".join(_negated(subject.etre, negative)).replace("n' ", "n'")
    french = [subject.french, french_verb, ADVERBS[adverb],
              _agree(masculine, feminine, subject.feminine, subject.plural)]
    return _sentence(english), _sentence(french)


def action_pair(subject: Subject, negative: bool, verb: str, adjective: str, noun: int, plural: bool,
                contracted: bool) -> tuple[str, str]:
    """``He is not eating the red apples.`` / ``Il ne mange pas les pommes rouges.``"""
    en_singular, en_plural, fr_singular, fr_plural, feminine = NOUNS[noun]
    english = (_english_subject(subject, contracted) + (["not"] if negative else [])
               + [verb, "the", adjective, en_plural if plural else en_singular])
    stem, nous_stem = VERBS[verb]
    conjugated = (nous_stem if subject.person == "1p" else stem) + ENDINGS[subject.person]
    article = "les" if plural else ("la" if feminine else "le")
    french_noun = fr_plural if plural else fr_singular
    if adjective:
        masculine, feminine_form, masculine_plural, before = ADJECTIVES[adjective]
        form = (_plural(feminine_form) if plural else feminine_form) if feminine else \
            (masculine_plural if plural else masculine)
        group = [form, french_noun] if before else [french_noun, form]
    else:
        group = [french_noun]
    french = [subject.french, *_negated(conjugated, negative), article, *group]
    return _sentence(english), _sentence(french)


def held_out_combinations(seed: int = 0, fraction: float = 0.15) -> tuple[set[tuple[str, int]], set[tuple[int, str]]]:
    """The (adjective, noun index) and (subject index, predicate) pairs kept out of the training corpus.

    Drawn by the seed, and drawn again while some word of the held-out sentences (either side) would occur
    in no seen sentence: a held-out combination is new, its words are not.
    """
    rng = random.Random(f"held-out-{seed}")
    attributive = sorted(itertools.product(ADJECTIVES, range(len(NOUNS))))
    predicative = sorted(itertools.product(range(len(SUBJECTS)), PREDICATES))
    for _ in range(100):
        held = (set(rng.sample(attributive, round(fraction * len(attributive)))),
                set(rng.sample(predicative, round(fraction * len(predicative)))))
        seen_pairs, held_pairs = _split(*held)
        if not unseen_words(held_pairs, seen_pairs):
            return held
    raise RuntimeError(f"no held-out combinations of fraction {fraction} leave every word seen")  # pragma: no cover


def words(pairs: list[tuple[str, str]]) -> set[str]:
    """The tokens of both sides, as the reference preprocessing makes them (``fâchée`` -> ``f:fachee``)."""
    found: set[str] = set()
    for english, french in pairs:
        found.update(_tokens(english, "e"), _tokens(french, "f"))
    return found


@functools.cache
def _tokens(text: str, side: str) -> frozenset[str]:
    from miprometheus.problems.text_to_text.anki_format import normalize

    return frozenset(f"{side}:{w}" for w in normalize(text).split())


def unseen_words(pairs: list[tuple[str, str]], seen: list[tuple[str, str]]) -> set[str]:
    """The tokens of ``pairs`` that no pair of ``seen`` has (``f:fachee``: a French token)."""
    return words(pairs) - words(seen)


def all_sentences(seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Every pair of the grammar, split into (seen combinations, held-out combinations), in a fixed order."""
    return _split(*held_out_combinations(seed))


def _split(held_attributive: set[tuple[str, int]],
           held_predicative: set[tuple[int, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    held: list[tuple[str, str]] = []
    for s, subject in enumerate(SUBJECTS):
        for negative, contracted in itertools.product((False, True), (False, True)):
            if contracted and subject.contracted is None:
                continue
            for adverb, adjective in itertools.product(ADVERBS, PREDICATES):
                pair = predicate_pair(subject, negative, adverb, adjective, contracted)
                (held if (s, adjective) in held_predicative else seen).append(pair)
            for verb, adjective, noun, plural in itertools.product(VERBS, ["", *ADJECTIVES], range(len(NOUNS)),
                                                                   (False, True)):
                pair = action_pair(subject, negative, verb, adjective, noun, plural, contracted)
                (held if (adjective, noun) in held_attributive else seen).append(pair)
    return seen, held


def _draw(pairs: list[tuple[str, str]], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """``count`` distinct pairs; predicate sentences (few) are kept in proportion a fifth of the draw."""
    predicates = [p for p in pairs if " the " not in p[0]]
    actions = [p for p in pairs if " the " in p[0]]
    n_predicates = min(len(predicates), count // 5)
    return rng.sample(predicates, n_predicates) + rng.sample(actions, min(len(actions), count - n_predicates))


def corpus_lines(pairs: list[tuple[str, str]], start: int = 1) -> str:
    return "".join(f"{en}\t{fr}\t{ATTRIBUTION.format(number=start + i, version=GRAMMAR_VERSION)}\n"
                   for i, (en, fr) in enumerate(pairs))


def _write_zip(path: Path, member: str, text: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, text.encode("utf-8"))
        archive.writestr("_about.txt", "Synthetic sentence pairs of the MI-Prometheus grammar "
                                       f"(version {GRAMMAR_VERSION}), in the format of manythings.org/anki.\n")
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()), mode="wb")


def write_synthetic_corpus(folder: Path | str, language: str = "syn", pairs: int = 6000, heldout_pairs: int = 1000,
                           seed: int = 0) -> tuple[Path, Path]:
    """Write ``<language>-eng.zip`` (``pairs`` pairs of seen combinations) and ``<language>_heldout-eng.zip``
    (``heldout_pairs`` pairs of held-out combinations) into ``folder``; the same files for the same arguments."""
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    seen, held = all_sentences(seed)
    rng = random.Random(f"corpus-{seed}")
    for _ in range(100):  # a sample of the seen pairs that misses a word of the held-out test is drawn again
        train = _draw(seen, pairs, rng)
        test = _draw(held, heldout_pairs, rng)
        if not unseen_words(test, train):
            break
    else:
        raise ValueError(f"{pairs} training pairs are too few to hold every word of {heldout_pairs} held-out pairs")
    rng.shuffle(train)
    rng.shuffle(test)
    main = folder / f"{language}-eng.zip"
    heldout = folder / f"{language}_heldout-eng.zip"
    _write_zip(heldout, f"{language}_heldout.txt", corpus_lines(test, start=len(train) + 1))
    _write_zip(main, f"{language}.txt", corpus_lines(train))
    _tokens.cache_clear()
    return main, heldout


_VERSION = re.compile(r"MI-Prometheus synthetic corpus #\d+ \(grammar v(\d+)\)")


def written_by_older_grammar(path: Path) -> bool:
    """Whether ``path`` (an Anki zip) was written by an older version of this grammar (then it may be rewritten);
    False for any other file, a real corpus above all."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith(".txt") and n != "_about.txt"), None)
            if member is None:
                return False
            with archive.open(member) as handle:
                first = handle.readline().decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile):
        return False
    found = _VERSION.search(first)
    return found is not None and int(found.group(1)) < GRAMMAR_VERSION


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic translation corpus in the Anki format.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--language", default="syn")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--heldout-pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    for path in write_synthetic_corpus(options.folder, options.language, options.pairs, options.heldout_pairs,
                                       options.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
