"""TranslationAnki's loader on small files in the official Anki format, good and malformed, through ``mip check``.

Writes into a temporary folder (or ``--folder``) ``fra-eng.zip`` files as manythings.org ships them: three
columns (English, French, attribution), two columns (the older files), the extracted ``fra.txt`` without a zip,
and three broken ones (a line without its tab, an empty file, a file in Latin-1 instead of UTF-8). Each is
checked with the attention encoder-decoder on the real-corpus settings (``default_anki_fra.yaml``, download off,
no English-prefix filter); prints each case's exit code and the last line ``mip check`` printed:

    python bench/translation_loader.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = [("I am cold.", "J'ai froid."), ("She is happy.", "Elle est heureuse."), ("He is tall.", "Il est grand."),
         ("We are tired.", "Nous sommes fatigués."), ("They are late.", "Ils sont en retard."),
         ("You are kind.", "Vous êtes gentil."), ("I'm sad.", "Je suis triste."), ("He's busy.", "Il est occupé."),
         ("She's ready.", "Elle est prête."), ("We're here.", "Nous sommes ici.")] * 3


def three_columns() -> str:
    attribution = "CC-BY 2.0 (France) Attribution: tatoeba.org #{} (CK) & #{} (sacredceltic)"
    return "".join(f"{en}\t{fr}\t{attribution.format(2 * i + 1, 2 * i + 2)}\n" for i, (en, fr) in enumerate(PAIRS))


def write_zip(folder: Path, payload: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "fra-eng.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fra.txt", payload)
        archive.writestr("_about.txt", "Tab-delimited bilingual sentence pairs (test file in the official format).\n")


def cases(root: Path) -> dict[str, Path]:
    text = three_columns()
    lines = text.splitlines(keepends=True)
    written = {"three columns (zip)": root / "three_columns", "two columns (zip)": root / "two_columns",
               "extracted fra.txt": root / "extracted", "malformed line 7": root / "malformed",
               "empty file": root / "empty", "Latin-1, not UTF-8": root / "latin1"}
    write_zip(written["three columns (zip)"], text.encode("utf-8"))
    write_zip(written["two columns (zip)"],
              "".join("\t".join(line.split("\t")[:2]) + "\n" for line in lines).encode("utf-8"))
    written["extracted fra.txt"].mkdir(parents=True, exist_ok=True)
    (written["extracted fra.txt"] / "fra.txt").write_text(text, encoding="utf-8")
    broken = list(lines)
    broken[6] = broken[6].replace("\t", " ", 1).split("\t")[0] + "\n"  # English and French without their tab
    write_zip(written["malformed line 7"], "".join(broken).encode("utf-8"))
    write_zip(written["empty file"], b"")
    write_zip(written["Latin-1, not UTF-8"], text.encode("latin-1"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="where to write the files (default: a temporary folder)")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        root = (options.folder or Path(temporary)).resolve()
        for name, folder in cases(root).items():
            command = [sys.executable, "-m", "miprometheus", "check",
                       str(REPO / "configs/translation/attention_encoder_decoder_anki.yaml"),
                       str(REPO / "configs/translation/default_anki_fra.yaml"),
                       f"training.problem.data_folder={folder}", "training.problem.download=false",
                       "training.problem.eng_prefixes=null"]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            last = (done.stdout + done.stderr).strip().splitlines()
            shown = [line for line in last if line.startswith("OK  training")] or last[-1:]
            print(f"{name:22s} exit {done.returncode}: {shown[0] if shown else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
