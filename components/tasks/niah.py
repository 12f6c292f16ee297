"""Needle in a haystack, byte-level (vocabulary 256), in the style of RULER's single-needle S-NIAH / passkey task
(Hsieh et al. 2024, arXiv:2404.06654; Mohtashami & Jaggi 2023).

An example of length L is a haystack (random printable bytes, or a window of the stdlib corpus) with the needle
`" The passkey is KEY: VALUE. "` inserted at a uniformly random byte depth, and at the very end the question
`" What is the passkey KEY? VALUE"`. KEY is a random 3-letter word (so that multi-needle variants can tell needles
apart), VALUE `value_digits` random digits. Only the answer's digits carry targets, each predicted from the
position before it, so the loss is exactly "copy the value of the needle whose key was asked".

Training uses `train_len`; evaluation scores exact match of the whole answer at every length in `eval_lengths`
(`recall/niah@{L}`), which measures length generalisation, and their mean (`recall/niah`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from components.options import ComponentError, Option

from .base import IGNORE, TASKS, Batch, Task, generator, predict
from .corpus import TokenFile
from .lm import LanguageModelling
from .mqar import EVAL_SEED, data_seed

KEY_LETTERS = 3
PRINTABLE = (32, 127)  # random haystack bytes: printable ASCII, space to '~'


def needle(key: bytes, value: bytes) -> bytes:
    return b" The passkey is " + key + b": " + value + b". "


def question(key: bytes, value: bytes) -> bytes:
    return b" What is the passkey " + key + b"? " + value


def overhead(value_digits: int) -> int:
    """Bytes of needle plus question: an example of length L holds L + 1 - overhead haystack bytes (L inputs and
    the one extra byte that the last input predicts)."""
    key, value = b"k" * KEY_LETTERS, b"0" * value_digits
    return len(needle(key, value)) + len(question(key, value))


def to_bytes(row: Tensor) -> bytes:
    return bytes(row.to(torch.uint8).tolist())


@TASKS.register("niah")
class NeedleInAHaystack(Task):
    summary = "needle in a haystack (RULER passkey style): recall a passkey value at several context lengths"
    options = (
        Option("train_len", int, 256, "training example length in bytes", low=16, high=1 << 20),
        Option("eval_lengths", str, "256,512,1024", "comma list of evaluation lengths in bytes"),
        Option("haystack", str, "random", "filler: random printable bytes, or windows of the stdlib corpus",
               choices=("random", "corpus")),
        Option("value_digits", int, 5, "digits of the passkey value", low=1, high=32),
        Option("eval_examples", int, 64, "evaluation examples per length", low=1, high=1 << 16),
    )
    vocab_size = 256

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        self.min_len = overhead(self.value_digits)
        self.check_length(self.train_len, "train_len")
        self.lengths = self.parse_lengths(self.eval_lengths)
        self._lm: LanguageModelling | None = None
        self._eval: dict[int, Batch] = {}

    def check_length(self, length: int, option: str) -> None:
        if length < self.min_len:
            raise ComponentError(f"option '{option}' of task 'niah': length {length} must be at least {self.min_len} "
                                 f"(needle plus question with value_digits={self.value_digits}, one haystack byte)")

    def parse_lengths(self, text: str) -> list[int]:
        lengths: list[int] = []
        for item in filter(None, (s.strip() for s in text.split(","))):
            if not item.isdigit():
                raise ComponentError(f"option 'eval_lengths' of task 'niah': {item!r} is not a length; "
                                     f"expected a comma list such as '256,512,1024'")
            self.check_length(int(item), "eval_lengths")
            if int(item) not in lengths:
                lengths.append(int(item))
        if not lengths:
            raise ComponentError("option 'eval_lengths' of task 'niah': give at least one length, e.g. '256,512'")
        return lengths

    def metrics(self) -> dict[str, str]:
        return {"recall/niah": "maximize", **{f"recall/niah@{n}": "maximize" for n in self.lengths}}

    def longest_context(self) -> int:
        return max([self.train_len, *self.lengths])

    def data_info(self) -> dict[str, float]:
        return {"data/answer_bytes": self.value_digits, "data/haystack_bytes": self.train_len + 1 - self.min_len}

    # ------------------------------------------------------------------ data
    def corpus_bytes(self, split: str) -> TokenFile:
        """Haystack text: the `lm` task's default stdlib corpus (shared cache). Training haystacks come from its
        training bytes, evaluation haystacks from its validation bytes, so no evaluation filler was trained on."""
        if self._lm is None:
            self._lm = LanguageModelling(corpus="stdlib")
        return getattr(self._lm.corpus_data(), split)

    def haystacks(self, n: int, size: int, split: str, gen: torch.Generator) -> Tensor:
        if self.haystack == "random":
            return torch.randint(*PRINTABLE, (n, size), generator=gen, dtype=torch.uint8)
        text = self.corpus_bytes(split)
        if len(text) <= size:
            raise ComponentError(f"task 'niah': the corpus' {split} split ({len(text)} bytes) is too short for "
                                 f"a {size}-byte haystack; use shorter lengths or haystack=random")
        starts = torch.randint(0, len(text) - size, (n,), generator=gen)
        return torch.stack([text[s : s + size] for s in starts.tolist()])

    def examples(self, n: int, length: int, split: str, gen: torch.Generator) -> Batch:
        """`n` examples of `length` bytes; all randomness comes from `gen`."""
        hay = self.haystacks(n, length + 1 - self.min_len, split, gen)
        keys = torch.randint(ord("a"), ord("z") + 1, (n, KEY_LETTERS), generator=gen)
        values = torch.randint(ord("0"), ord("9") + 1, (n, self.value_digits), generator=gen)
        depths = torch.randint(0, hay.shape[1] + 1, (n,), generator=gen)  # needle before byte `depth`
        rows = []
        for h, k, v, d in zip(hay.tolist(), keys.tolist(), values.tolist(), depths.tolist()):
            key, value = bytes(k), bytes(v)
            rows.append(list(bytes(h[:d]) + needle(key, value) + bytes(h[d:]) + question(key, value)))
        seq = torch.tensor(rows, dtype=torch.long)  # (n, length + 1)
        targets = torch.full((n, length), IGNORE, dtype=torch.long)
        targets[:, -self.value_digits :] = seq[:, -self.value_digits :]  # the answer digits, one position early
        return Batch(seq[:, :-1].contiguous(), targets)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.examples(batch_size, self.train_len, "train", generator(seed, step))

    def eval_batch(self, length: int) -> Batch:
        """The fixed evaluation set at one length, built once and kept in memory. Its seed depends only on what
        defines the data (haystack kind, digits, length), never on the run seed."""
        if length not in self._eval:
            blob = {"task": "niah", "haystack": self.haystack, "value_digits": self.value_digits, "length": length}
            self._eval[length] = self.examples(self.eval_examples, length, "val", generator(EVAL_SEED, data_seed(blob)))
        return self._eval[length]

    def evaluate(self, model: torch.nn.Module, batch_size: int = 16, final: bool = True) -> dict[str, float]:
        out: dict[str, float] = {}
        for length in self.lengths:
            batch = self.eval_batch(length)
            preds = predict(model, batch.tokens, batch_size)
            # Exact match of teacher-forced argmax equals exact match of greedy decoding: if every digit's argmax
            # given the true prefix is right, greedy decoding feeds itself that same prefix at every step and
            # emits the same digits; and greedy's first wrong digit is a teacher-forced error at that position.
            answer = batch.targets != IGNORE
            correct = ((preds == batch.targets) | ~answer).all(dim=1)
            out[f"recall/niah@{length}"] = float(correct.float().mean())
        out["recall/niah"] = sum(out.values()) / len(self.lengths)
        return out
