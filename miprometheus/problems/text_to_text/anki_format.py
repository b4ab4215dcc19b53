"""The official TranslationAnki distribution (manythings.org): reading, the reference preprocessing, download.

``http://www.manythings.org/anki/<lang>-eng.zip`` holds ``<lang>.txt``: UTF-8, one pair per line, tab-separated,
``English<TAB>other language`` (older files) or ``English<TAB>other<TAB>attribution`` (current ones). The file is
read inside the zip or extracted; only the first two columns are kept. A line with another number of columns, an
empty side, a byte sequence that is not UTF-8, or a file without pairs is a DataError naming the file, the line
and the cause: the corpus is the user's input, and a silently skipped line would change every result after it.

The reference preprocessing is the PyTorch seq2seq tutorial's: lower case and strip, unicode to ASCII (NFD, the
combining marks dropped), a space before each of ``. ! ?``, every run of other characters than ``a-zA-Z.!?``
replaced by one space (then stripped, so that tokens are the space-separated words).
"""

from __future__ import annotations

import functools
import io
import re
import unicodedata
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from miprometheus.errors import DataError
from miprometheus.files import atomic_write

URL = "http://www.manythings.org/anki/{language}-eng.zip"
#: the site refuses bots' user agents; the original sent a browser's
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
DOWNLOAD_TIMEOUT_S = 60
#: the tutorial's English prefixes (``eng_prefixes``), for configs that want its filter
TUTORIAL_PREFIXES = ("i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ",
                     "we are", "we re ", "they are", "they re ")


def archive_name(language: str) -> str:
    return f"{language}-eng.zip"


def text_name(language: str) -> str:
    return f"{language}.txt"


# --- preprocessing ----------------------------------------------------------------------------------------------
def unicode_to_ascii(text: str) -> str:
    """NFD-normalise and drop the combining marks: ``"été"`` -> ``"ete"``."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


_PUNCTUATION = re.compile(r"([.!?])")
_OTHERS = re.compile(r"[^a-zA-Z.!?]+")


def normalize(text: str) -> str:
    """The tutorial's normalisation: ``"J'ai froid."`` -> ``"j ai froid ."``."""
    text = unicode_to_ascii(text.lower().strip())
    text = _PUNCTUATION.sub(r" \1", text)
    return _OTHERS.sub(" ", text).strip()


def plain(text: str) -> str:
    """Without the reference normalisation: only runs of white space made one space (tokens split on spaces)."""
    return " ".join(text.split())


_DETOKENIZE = re.compile(r" ([.!?,])")


def detokenize(tokens: list[str]) -> str:
    """Words joined by spaces, the space before ``. ! ? ,`` removed: ``["i", "am", "cold", "."]`` -> ``"i am cold."``
    (what BLEU is computed on: sacreBLEU tokenises it again, the same way for output and reference)."""
    return _DETOKENIZE.sub(r"\1", " ".join(tokens))


# --- reading ----------------------------------------------------------------------------------------------------
def read_corpus_bytes(path: Path, language: str) -> tuple[bytes, str]:
    """The bytes of ``<language>.txt`` from ``path`` (the official zip, or the extracted text file), and the name to
    give in errors (``archive.zip:member``)."""
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                member = text_name(language)
                if member not in names:
                    texts = [n for n in names if n.endswith(".txt") and not Path(n).name.startswith("_")]
                    if len(texts) != 1:
                        held = ', '.join(names) or 'nothing'
                        raise DataError(f"{path}: the archive holds no {member} (it holds {held})")
                    member = texts[0]
                return archive.read(member), f"{path}:{member}"
        except zipfile.BadZipFile as exc:
            raise DataError(f"{path}: not a zip archive ({exc})") from None
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def parse_pairs(raw: bytes, source: str) -> list[tuple[str, str, int]]:
    """(English, other language, line number) of every non-blank line; DataError naming ``source``, the line and
    the cause for text that is not UTF-8, a line without 2 or 3 tab-separated columns, an empty side, no pairs."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{source}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}: "
                        f"{exc.reason}); the official files are UTF-8") from None
    pairs = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) not in (2, 3):
            raise DataError(f"{source}: line {number}: {len(columns)} tab-separated column(s), expected 2 (English, "
                            f"the other language) or 3 (with the attribution): {line[:80]!r}")
        english, other = columns[0].strip(), columns[1].strip()
        if not english or not other:
            side = "English" if not english else "other-language"
            raise DataError(f"{source}: line {number}: the {side} sentence is empty: {line[:80]!r}")
        pairs.append((english, other, number))
    if not pairs:
        raise DataError(f"{source}: the file holds no sentence pairs (it is empty)")
    return pairs


class Pairs(list):
    """Normalised pairs ``(english, other, line)`` of one corpus file (a list that supports weak references, so
    that every split of a process shares one copy through ``shared_asset``)."""


def load_pairs(path: Path, language: str, normalized: bool) -> Pairs:
    raw, source = read_corpus_bytes(path, language)
    clean = normalize if normalized else plain
    return Pairs((clean(english), clean(other), line) for english, other, line in parse_pairs(raw, source))


@functools.cache
def pairs_loader(language: str, normalized: bool) -> Callable[[Path], Pairs]:
    """The loader of ``<language>.txt`` pairs (one object per arguments: ``shared_asset`` keys on it)."""
    return functools.partial(load_pairs, language=language, normalized=normalized)


# --- download ---------------------------------------------------------------------------------------------------
def fetch(url: str) -> bytes:
    """Download one URL into memory with a browser's User-Agent (module-level so that tests can replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def download(language: str, folder: Path) -> Path:
    """Download ``<language>-eng.zip`` into ``folder`` (checked to be a zip holding ``<language>.txt``, written
    atomically). There is no checksum to verify: the file is regenerated from Tatoeba now and then."""
    url = URL.format(language=language)
    target = folder / archive_name(language)
    try:
        payload = fetch(url)
    except Exception as exc:  # any network failure: no route offline, a timeout, an HTTP error
        raise DataError(f"could not download {url}: {exc}. Offline, put the official {archive_name(language)} "
                        f"(from https://www.manythings.org/anki/) or its extracted {text_name(language)} into "
                        f"{folder}") from None
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            if text_name(language) not in archive.namelist():
                raise DataError(f"the download of {url} holds no {text_name(language)}: not saved")
    except zipfile.BadZipFile:
        raise DataError(f"the download of {url} is not a zip archive ({len(payload)} bytes): not saved") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda handle: handle.write(payload), mode="wb")
    except OSError as exc:
        raise DataError(f"cannot write the downloaded {target}: {exc.strerror or exc}") from None
    return target


__all__ = ["TUTORIAL_PREFIXES", "URL", "Pairs", "archive_name", "detokenize", "download", "load_pairs",
           "pairs_loader", "normalize", "parse_pairs", "read_corpus_bytes", "text_name", "unicode_to_ascii"]
