"""Character-level vocabulary for the shipped recogniser."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")
DEFAULT_CHARS = "0123456789.-+/:ABCDEFGHIJKLMNOPQRSTUVWXYZ"
VOCAB_FILE = "eyeops_vocab.json"


class CharVocab:
    """Maps characters to token ids and back. Ids 0–2 are pad, start and end."""

    def __init__(self, chars: str = DEFAULT_CHARS) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be unique")
        self.chars = chars
        self._ids = {c: i + len(SPECIALS) for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Token ids of the text followed by EOS; raises on a character outside the vocabulary."""
        try:
            return [self._ids[c] for c in text] + [EOS]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.chars[i - len(SPECIALS)])
        return "".join(out)

    def token_id(self, char: str) -> int | None:
        return self._ids.get(char)

    def save(self, directory: Path) -> None:
        (directory / VOCAB_FILE).write_text(json.dumps({"chars": self.chars}), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> CharVocab:
        return cls(json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))["chars"])
