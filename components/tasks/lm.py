"""Byte-level language modelling (vocabulary 256, no tokenizer): validation loss, perplexity, bits per byte."""
from __future__ import annotations

import math
import os

import torch

from components.options import ComponentError, Option

from .base import TASKS, Batch, Task, cache_dir, generator, mean_loss
from .corpus import Corpus, hf_documents, path_documents, split_documents, stdlib_documents


@TASKS.register("lm")
class LanguageModelling(Task):
    summary = "byte-level language modelling on the stdlib sources, a local text file/folder or a HF dataset"
    options = (
        Option("corpus", str, "stdlib", "where the text comes from", choices=("stdlib", "path", "hf")),
        Option("path", str, "", "text file or folder (corpus=path)"),
        Option("hf_name", str, "", "dataset name or loader such as 'text' (corpus=hf)"),
        Option("hf_config", str, "", "dataset configuration (corpus=hf)"),
        Option("hf_split", str, "train", "split to read (corpus=hf)"),
        Option("hf_text_field", str, "text", "column holding the text (corpus=hf)"),
        Option("hf_data_files", str, "", "data_files for local loaders like 'text' or 'json' (corpus=hf)"),
        Option("seq_len", int, 256, "training and evaluation window in bytes", low=8, high=1 << 20),
        Option("max_bytes", int, 8 << 20, "bytes of training text kept", low=1 << 10, high=1 << 34),
        Option("eval_bytes", int, 1 << 16, "bytes of validation text scored", low=256, high=1 << 30),
    )
    vocab_size = 256

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        if self.corpus == "path" and not self.path:
            raise ComponentError("task 'lm': corpus=path needs the option 'path'")
        if self.corpus == "hf" and not self.hf_name:
            raise ComponentError("task 'lm': corpus=hf needs the option 'hf_name'")
        for opt in self.options:  # an option of another corpus would be silently ignored: say so instead
            owner = "path" if opt.name == "path" else "hf" if opt.name.startswith("hf_") else None
            if owner and owner != self.corpus and self.opts[opt.name] != opt.default:
                raise ComponentError(f"task 'lm': option '{opt.name}' is read only with corpus={owner}, and corpus is "
                                     f"'{self.corpus}'; set corpus={owner} too (task.corpus={owner})")
        self._corpus: Corpus | None = None

    def metrics(self) -> dict[str, str]:
        return {"val/loss": "minimize", "val/ppl": "minimize", "val/bpb": "minimize"}

    # ------------------------------------------------------------------ data
    def corpus_data(self) -> Corpus:
        if self._corpus is None:
            path = cache_dir() / f"lm-{self.key()}.pt"
            if path.is_file():
                self._corpus = Corpus(**torch.load(path))
            else:
                self._corpus = self._build()
                path.parent.mkdir(parents=True, exist_ok=True)
                # a temporary name of this process's own: two workers building the same corpus at once each
                # write theirs, and the atomic rename lets neither read half a file nor lose its own
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                torch.save(vars(self._corpus), tmp)
                tmp.replace(path)
            if len(self._corpus.train) < self.seq_len + 1 or len(self._corpus.val) < self.seq_len + 1:
                raise ComponentError(f"task 'lm': the corpus is too small for seq_len={self.seq_len} "
                                     f"({len(self._corpus.train)} train / {len(self._corpus.val)} val bytes)")
        return self._corpus

    def _build(self) -> Corpus:
        if self.corpus == "stdlib":
            docs = stdlib_documents()
        elif self.corpus == "path":
            docs = path_documents(self.path)
        else:
            docs = hf_documents(self.hf_name, self.hf_split, self.hf_text_field, self.hf_config or None,
                                self.hf_data_files or None)
        return split_documents(docs, self.max_bytes)

    def data_info(self) -> dict[str, float]:
        c = self.corpus_data()
        return {"data/train_bytes": len(c.train), "data/val_bytes": len(c.val), "data/documents": c.documents,
                "data/unigram_bpb": c.unigram_bits_per_byte()}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        train = self.corpus_data().train
        starts = torch.randint(0, len(train) - self.seq_len, (batch_size,), generator=generator(seed, step))
        windows = torch.stack([train[s : s + self.seq_len + 1] for s in starts.tolist()]).long()
        return Batch(windows[:, :-1], windows[:, 1:])

    def eval_windows(self) -> tuple[torch.Tensor, torch.Tensor]:
        val = self.corpus_data().val[: self.eval_bytes + 1]
        n = (len(val) - 1) // self.seq_len
        x = val[: n * self.seq_len].view(n, self.seq_len).long()
        y = val[1 : n * self.seq_len + 1].view(n, self.seq_len).long()
        return x, y

    def evaluate(self, model: torch.nn.Module, batch_size: int = 16, final: bool = True) -> dict[str, float]:
        loss = mean_loss(model, *self.eval_windows(), batch_size)
        return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/bpb": loss / math.log(2.0)}
