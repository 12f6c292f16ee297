"""Multi-query associative recall (MQAR), as in Zoology (Arora et al. 2023, arXiv:2312.04927).

An example of length `seq_len` is `k1 v1 k2 v2 ... kN vN` (N = `pairs` distinct keys from [1, vocab/2), distinct
values from [vocab/2, vocab)), then, in the remaining positions, every key is queried once, at a sampled even
offset. As in Zoology's generator, the query region holds only the keys (everything else is 0, padding; 0 is never
a key or value): the values appear only as targets. Loss and accuracy are taken only at each query key's
position, whose target is the paired value, so a model scores above chance (1/N among the context's values) only
by recalling which value followed that key in the context. (Writing the value after each query key, as an
earlier version did, lets a model reach H_N/N, 0.34 for N = 8, by answering with a value not yet asked, and a
Transformer then stalls there instead of learning the lookup.) Zoology's power-law gap placement (queries
cluster near the context, P(gap g) ~ g^(a-1)) is the default; `uniform` spreads them evenly.

Training on a mixture of difficulties, as Zoology does: `train_pairs` (e.g. "2,4,8") draws each training
example's number of pairs from that list, at the same length; evaluation uses `pairs`. Easy examples let a model
discover the lookup, which then carries over to the harder ones.

The metric `recall/mqar` is the argmax accuracy on query positions, `val/loss` the cross-entropy there; the
`ladder` option adds `recall/mqar@{seq_len}x{pairs}` for harder settings scored with the same model (Zoology
reports such sweeps over sequence length and number of pairs).
"""
from __future__ import annotations

import hashlib
import json

import torch
from torch import Tensor

from components.options import ComponentError, Option

from .base import IGNORE, TASKS, Batch, Task, generator

EVAL_SEED = 12345  # evaluation examples never depend on the run seed, so trials are scored on the same set


def data_seed(blob: dict) -> int:
    """A stable integer from the options that define a data set (for `generator`)."""
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@torch.no_grad()
def loss_and_predictions(model: torch.nn.Module, batch: Batch, batch_size: int) -> tuple[float, Tensor]:
    """Mean cross-entropy over non-IGNORE targets and argmax predictions (B, T), from one forward pass per chunk
    (`mean_loss` plus `predict` would run the model twice)."""
    model_device = next(model.parameters()).device
    total, count, preds = 0.0, 0, []
    for x, y in zip(batch.tokens.split(batch_size), batch.targets.split(batch_size)):
        logits, _ = model(x.to(model_device))
        logits = logits.float()
        y = y.to(model_device)
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE,
                                                   reduction="sum").item()
        count += int((y != IGNORE).sum())
        preds.append(logits.argmax(-1).cpu())
    return total / max(count, 1), torch.cat(preds)


def masked_accuracy(preds: Tensor, targets: Tensor) -> float:
    """Fraction of the non-IGNORE targets that `preds` gets right."""
    mask = targets != IGNORE
    return float((preds[mask] == targets[mask]).float().mean()) if mask.any() else 0.0


@TASKS.register("mqar")
class MultiQueryRecall(Task):
    summary = "multi-query associative recall (Zoology): recall the value paired with each queried key"
    options = (
        Option("vocab", int, 256, "vocabulary: keys from [1, vocab/2), values from [vocab/2, vocab)",
               low=8, high=1 << 16),
        Option("seq_len", int, 128, "example length in tokens", low=4, high=1 << 20),
        Option("pairs", int, 8, "key-value pairs in the context, each queried once", low=1, high=1 << 16),
        Option("gap", str, "power", "where queries go after the context", choices=("power", "uniform")),
        Option("power_a", float, 0.01, "power-law exponent a of P(gap g) ~ g^(a-1) (gap=power)", low=1e-4, high=1.0),
        Option("eval_examples", int, 512, "examples in the fixed evaluation set (per setting)", low=1, high=1 << 20),
        Option("ladder", str, "", "extra settings scored at evaluation, e.g. '256x16,512x32' (seq_len x pairs)"),
        Option("train_pairs", str, "", "training mixture of pair counts, e.g. '2,4,8' (empty: `pairs` only)"),
    )

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        self.check_setting(self.seq_len, self.pairs)
        self.settings = self.parse_ladder(self.ladder)
        self.mixture = self.parse_mixture(self.train_pairs)
        self._eval: dict[tuple[int, int], Batch] = {}

    def longest_context(self) -> int:
        return max([self.seq_len, *(length for length, _ in self.settings)])

    @property
    def vocab_size(self) -> int:  # the model's vocabulary follows the option
        return self.vocab

    # ------------------------------------------------------------ validation
    def check_setting(self, seq_len: int, pairs: int, ladder: bool = False) -> None:
        """Keys must be distinct (so pairs < vocab/2) and every query needs its own two slots after the context
        (Zoology's condition 4 * pairs <= seq_len)."""
        most_pairs = self.vocab // 2 - 1
        if pairs > most_pairs:
            where = "ladder" if ladder else "pairs"
            raise ComponentError(f"option '{where}' of task 'mqar': pairs={pairs} must be in [1, {most_pairs}] "
                                 f"(distinct keys from [1, vocab/2) with vocab={self.vocab})")
        if 4 * pairs > seq_len:
            where = "ladder" if ladder else "seq_len"
            raise ComponentError(f"option '{where}' of task 'mqar': seq_len={seq_len} must be at least "
                                 f"4 * pairs = {4 * pairs} (context plus one key-value slot per query)")

    def parse_ladder(self, text: str) -> list[tuple[int, int]]:
        settings: list[tuple[int, int]] = []
        for item in filter(None, (s.strip() for s in text.split(","))):
            seq, sep, pairs = item.lower().partition("x")
            if not sep or not seq.strip().isdigit() or not pairs.strip().isdigit():
                raise ComponentError(f"option 'ladder' of task 'mqar': {item!r} is not SEQ_LENxPAIRS; "
                                     f"expected a comma list such as '256x16,512x32'")
            setting = (int(seq), int(pairs))
            if setting[1] < 1:
                raise ComponentError(f"option 'ladder' of task 'mqar': pairs in {item!r} must be at least 1")
            self.check_setting(*setting, ladder=True)
            if setting not in settings:
                settings.append(setting)
        return settings

    def parse_mixture(self, text: str) -> list[int]:
        counts = []
        for item in filter(None, (s.strip() for s in text.split(","))):
            if not item.isdigit() or int(item) < 1:
                raise ComponentError(f"option 'train_pairs' of task 'mqar': {item!r} is not a positive pair count; "
                                     "expected a comma list such as '2,4,8'")
            self.check_setting(self.seq_len, int(item))
            counts.append(int(item))
        return counts or [self.pairs]

    # ------------------------------------------------------------------ data
    def metrics(self) -> dict[str, str]:
        out = {"recall/mqar": "maximize", "val/loss": "minimize"}
        out.update({f"recall/mqar@{s}x{p}": "maximize" for s, p in self.settings})
        return out

    def data_info(self) -> dict[str, float]:
        chance = 1.0 / (self.vocab - self.vocab // 2)  # a uniform guess among the values
        return {"data/eval_queries": self.eval_examples * self.pairs, "data/chance": chance}

    @staticmethod
    def distinct(n: int, among: int, k: int, gen: torch.Generator) -> Tensor:
        """(n, k) integers from [0, among), distinct within each row, uniformly random."""
        return torch.multinomial(torch.ones(among).expand(n, among), k, replacement=False, generator=gen)

    def examples(self, n: int, seq_len: int, pairs: int, gen: torch.Generator) -> Batch:
        """`n` random examples; all randomness comes from `gen`."""
        half = self.vocab // 2
        keys = self.distinct(n, half - 1, pairs, gen) + 1  # in [1, half)
        values = self.distinct(n, self.vocab - half, pairs, gen) + half  # in [half, vocab)
        context = 2 * pairs
        space = (seq_len - context) // 2  # query slots: a key at an even offset, its value right after
        if self.gap == "power":
            g = torch.arange(1, space + 1, dtype=torch.float64)
            weights = self.power_a * g ** (self.power_a - 1)
        else:
            weights = torch.ones(space, dtype=torch.float64)
        gaps = torch.multinomial(weights.expand(n, space), pairs, replacement=False, generator=gen)
        tokens = torch.zeros(n, seq_len, dtype=torch.long)
        tokens[:, 0:context:2] = keys
        tokens[:, 1:context:2] = values
        where = context + 2 * gaps
        tokens.scatter_(1, where, keys)  # the query region holds only the keys (Zoology)
        targets = torch.full_like(tokens, IGNORE)
        targets.scatter_(1, where, values)  # at the query key, predict its value (the next token)
        return Batch(tokens, targets)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        gen = generator(seed, step)
        if len(self.mixture) == 1:
            return self.examples(batch_size, self.seq_len, self.mixture[0], gen)
        # each example's pair count drawn from the mixture; one sub-batch per count, rows in drawn order
        draw = torch.randint(len(self.mixture), (batch_size,), generator=gen)
        tokens = torch.zeros(batch_size, self.seq_len, dtype=torch.long)
        targets = torch.full_like(tokens, IGNORE)
        for i, pairs in enumerate(self.mixture):
            rows = (draw == i).nonzero().flatten()
            if len(rows):
                part = self.examples(len(rows), self.seq_len, pairs, gen)
                tokens[rows], targets[rows] = part.tokens, part.targets
        return Batch(tokens, targets)

    def eval_batch(self, seq_len: int | None = None, pairs: int | None = None) -> Batch:
        """The fixed evaluation set of one setting (the task's own by default), built once and kept in memory.
        Its seed depends only on what defines the data, not on the run seed, the ladder or the task key."""
        setting = (seq_len or self.seq_len, pairs or self.pairs)
        if setting not in self._eval:
            blob = {"task": "mqar", "vocab": self.vocab, "gap": self.gap, "seq_len": setting[0], "pairs": setting[1],
                    "power_a": self.power_a if self.gap == "power" else None}
            self._eval[setting] = self.examples(self.eval_examples, *setting, generator(EVAL_SEED, data_seed(blob)))
        return self._eval[setting]

    def evaluate(self, model: torch.nn.Module, batch_size: int = 16, final: bool = True) -> dict[str, float]:
        batch = self.eval_batch()
        loss, preds = loss_and_predictions(model, batch, batch_size)
        out = {"recall/mqar": masked_accuracy(preds, batch.targets), "val/loss": loss}
        for seq_len, pairs in self.settings if final else ():  # the ladder: after training only
            rung = self.eval_batch(seq_len, pairs)
            _, preds = loss_and_predictions(model, rung, batch_size)
            out[f"recall/mqar@{seq_len}x{pairs}"] = masked_accuracy(preds, rung.targets)
        return out
