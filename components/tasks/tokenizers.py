"""Tokenizers of the language-modelling task: bytes (the offline default, vocabulary 256), a byte-level BPE trained
with Hugging Face `tokenizers` on the corpus' training split (cached beside the corpus), or a local `tokenizer.json`.

`encode(text bytes)` returns the token ids and the bytes of text each token covers, so bits per byte can be
reported beside per-token perplexity for any tokenizer (runs with different tokenizers compare on bits per byte).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from components.options import ComponentError

BPE_BATCH = 1 << 20  # bytes of training text per item handed to the BPE trainer


class ByteTokenizer:
    vocab_size = 256

    def encode(self, text: bytes) -> tuple[np.ndarray, np.ndarray]:
        ids = np.frombuffer(text, dtype=np.uint8)
        return ids, np.ones(len(ids), dtype=np.int64)


class HFTokenizer:
    """A `tokenizers.Tokenizer`: text is decoded as UTF-8 (an invalid byte becomes U+FFFD, counted as the 3 bytes
    it then is), and token i covers the text's bytes from the end of token i-1 to its own end (byte-level BPE
    gives a character split across tokens to both, so ends, not spans, add up to the text's bytes exactly)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenizer:
        from tokenizers import Tokenizer

        p = Path(path).expanduser()
        if not p.is_file():
            raise ComponentError(f"task option 'tokenizer_path': {p} is not a file")
        try:
            return cls(Tokenizer.from_file(str(p)))
        except Exception as err:  # the Rust side raises plain Exceptions with its parser's message
            raise ComponentError(f"task option 'tokenizer_path': {p} is not a tokenizers JSON file: {err}") from None

    def encode(self, text: bytes) -> tuple[np.ndarray, np.ndarray]:
        string = text.decode("utf-8", errors="replace")
        enc = self.tokenizer.encode(string, add_special_tokens=False)
        raw = np.frombuffer(string.encode("utf-8"), dtype=np.uint8)
        char_start = np.flatnonzero((raw & 0xC0) != 0x80)  # byte offset of every character
        byte_at = np.append(char_start, len(raw))  # character offset -> byte offset
        ends = byte_at[np.array([end for _, end in enc.offsets], dtype=np.int64)] if enc.offsets else np.zeros(0, int)
        ends = np.maximum.accumulate(ends) if len(ends) else ends
        covered = np.diff(ends, prepend=0)
        if len(covered):
            covered[-1] += len(raw) - ends[-1]  # trailing bytes no token claims (none for byte-level BPE)
        return np.asarray(enc.ids, dtype=np.int64), covered


def train_bpe(texts: Iterator[bytes], vocab_size: int, path: Path) -> HFTokenizer:
    """A byte-level BPE (GPT-2's pre-tokenizer, all 256 bytes in the alphabet, so any text encodes) trained on
    `texts`, saved to `path` (written under a temporary name and renamed: concurrent builders never read half)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator((t.decode("utf-8", errors="replace") for t in texts), trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tok.save(str(tmp))
    tmp.replace(path)
    return HFTokenizer(tok)


def file_digest(path: str | Path) -> str:
    """Content key of a tokenizer file (a changed file is a different tokenization, so a different corpus cache)."""
    p = Path(path).expanduser()
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else "missing"
