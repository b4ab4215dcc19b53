"""Vocabularies and answer sets: built from the training split only, saved with the experiment.

Index 0 is always the padding token and index 1 the unknown token, so that a word the training
split never held (in validation, testing or a transfer run) is encoded as UNK rather than failing
or silently growing the model's embedding.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from miprometheus.errors import DataError
from miprometheus.files import atomic_write_json

PAD = "<pad>"
UNK = "<unk>"
SOS = "<sos>"
EOS = "<eos>"
FORMAT = "miprometheus-vocabulary"
VERSION = 1


class Vocabulary:
    """A fixed mapping between tokens and indices: PAD=0, UNK=1, then optionally SOS and EOS, then the words."""

    def __init__(self, words: Sequence[str], sequence_tokens: bool = False) -> None:
        self.specials = [PAD, UNK] + ([SOS, EOS] if sequence_tokens else [])
        wrong = sorted(w for w, n in Counter(words).items() if n > 1 or w in (PAD, UNK, SOS, EOS))
        if wrong:
            raise ValueError(f"vocabulary words must be unique and not special tokens: {wrong[:5]}")
        self.tokens: list[str] = [*self.specials, *words]
        self.index: dict[str, int] = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], sequence_tokens: bool = False, min_count: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """A vocabulary of the words of ``token_lists`` (the TRAINING split's): most frequent first, ties by
        alphabet, so the same data always gives the same indices; words seen fewer than ``min_count``
        times are left to UNK, as are those beyond ``max_size`` words."""
        counts = Counter(token for tokens in token_lists for token in tokens)
        for special in (PAD, UNK, SOS, EOS):
            counts.pop(special, None)
        words = [w for w, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_count]
        return cls(words[:max_size] if max_size is not None else words, sequence_tokens)

    # --- encoding ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    @property
    def pad_index(self) -> int:
        return 0

    @property
    def unk_index(self) -> int:
        return 1

    @property
    def sos_index(self) -> int:
        return self._special(SOS)

    @property
    def eos_index(self) -> int:
        return self._special(EOS)

    def _special(self, token: str) -> int:
        if token not in self.index:
            raise KeyError(f"this vocabulary has no {token} token (built without sequence_tokens)")
        return self.index[token]

    def encode(self, tokens: Iterable[str], add_sos_eos: bool = False) -> list[int]:
        """The indices of ``tokens``; a token outside the vocabulary is UNK (1)."""
        ids = [self.index.get(token, 1) for token in tokens]
        return [self.sos_index, *ids, self.eos_index] if add_sos_eos else ids

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """The tokens of ``ids`` (PAD, SOS and EOS left out when ``strip_specials``; UNK is kept)."""
        dropped = {PAD, SOS, EOS} if strip_specials else set()
        return [t for t in (self.tokens[int(i)] for i in ids) if t not in dropped]

    # --- saving --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The vocabulary as JSON values (how it is stored in an experiment's assets)."""
        return {"format": FORMAT, "version": VERSION, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "vocabulary") -> Vocabulary:
        """The vocabulary :meth:`to_dict` described; DataError (naming ``source``) when malformed."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"{source} is not an MI-Prometheus vocabulary (no '{FORMAT}' marker)")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise DataError(f"{source}: vocabulary format version {data.get('version')!r} is not supported "
                            f"(this MI-Prometheus reads up to {VERSION})")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{source}: 'tokens' must be a list of strings")
        sequence_tokens = tokens[2:4] == [SOS, EOS]
        specials = [PAD, UNK] + ([SOS, EOS] if sequence_tokens else [])
        if tokens[:len(specials)] != specials:
            raise DataError(f"{source}: a vocabulary starts with {PAD}, {UNK} (then optionally {SOS}, {EOS}); "
                            f"this one starts with {tokens[:4]}")
        try:
            return cls(tokens[len(specials):], sequence_tokens)
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from None

    def save(self, path: Path | str) -> None:
        """Write the vocabulary as JSON, atomically."""
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path | str, name: str = "vocabulary") -> Vocabulary:
        """Read a vocabulary file, or the vocabulary ``name`` of an experiment's ``assets.json``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"cannot read vocabulary file {path}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"vocabulary file {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("assets"), dict):  # an experiment's assets.json
            if name not in data["assets"]:
                raise DataError(f"{path} holds no vocabulary {name!r} (it holds {', '.join(data['assets']) or 'none'})")
            data = data["assets"][name]
        return cls.from_dict(data, str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {self.tokens[:6]}{'...' if len(self) > 6 else ''})"


def padded_rows(tokens: torch.Tensor, lengths: torch.Tensor,
                indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``indices`` of an encoded split (``tokens`` [N, W], PAD-padded, and their ``lengths`` [N]) as a batch:
    ``(tokens [B, T], lengths [B])``, ``T`` the longest of these rows, so a batch is as wide as it needs to be."""
    chosen = lengths[indices]
    return tokens[indices, :int(chosen.max())], chosen


__all__ = ["EOS", "PAD", "SOS", "UNK", "Vocabulary", "padded_rows"]
