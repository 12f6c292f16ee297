"""Language modelling: validation loss and perplexity per token, and bits per byte beside them (which compare across
tokenizers). Bytes (vocabulary 256, no tokenizer) are the offline default; a BPE trained on the corpus or a local
tokenizer.json are options. The corpus is tokenized once into token files that training reads in place."""
from __future__ import annotations

import math
import shutil

import numpy as np
import torch

from components.options import ComponentError, Option

from .base import TASKS, Batch, Task, cache_dir, generator, mean_loss
from .corpus import Corpus, Documents, build_corpus, hf_documents, load_corpus, path_documents, stdlib_documents
from .tokenizers import ByteTokenizer, HFTokenizer, file_digest, train_bpe

# an option read only with one value of another option: (option prefix or name) -> (owner option, its value)
OWNERS = {"path": ("corpus", "path"), "hf_": ("corpus", "hf"), "vocab_size": ("tokenizer", "bpe"),
          "tokenizer_path": ("tokenizer", "file")}


@TASKS.register("lm")
class LanguageModelling(Task):
    summary = ("language modelling (bytes, a BPE trained on the corpus, or a tokenizer.json) on the stdlib sources, a "
               "local text file/folder or a streamed HF dataset")
    options = (
        Option("corpus", str, "stdlib", "where the text comes from", choices=("stdlib", "path", "hf")),
        Option("path", str, "", "text file or folder (corpus=path)"),
        Option("hf_name", str, "", "dataset name or loader such as 'text' (corpus=hf)"),
        Option("hf_config", str, "", "dataset configuration (corpus=hf)"),
        Option("hf_split", str, "train", "split to read (corpus=hf)"),
        Option("hf_text_field", str, "text", "column holding the text (corpus=hf)"),
        Option("hf_data_files", str, "", "data_files for local loaders like 'text' or 'json' (corpus=hf)"),
        Option("tokenizer", str, "bytes", "bytes (vocabulary 256), a byte-level BPE trained on the training split "
               "(cached beside the corpus), or a local tokenizer.json", choices=("bytes", "bpe", "file")),
        Option("vocab_size", int, 4096, "BPE vocabulary (tokenizer=bpe)", low=257, high=1 << 20),
        Option("tokenizer_path", str, "", "a tokenizers JSON file (tokenizer=file)"),
        Option("seq_len", int, 256, "training and evaluation window in tokens", low=8, high=1 << 20),
        Option("max_bytes", int, 8 << 20, "bytes of training text tokenized; the token files stay on disk and are "
               "read in place, so this may exceed memory", low=1 << 10, high=1 << 40),
        Option("eval_bytes", int, 1 << 16, "bytes of validation text scored", low=256, high=1 << 30),
    )

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        if self.corpus == "path" and not self.path:
            raise ComponentError("task 'lm': corpus=path needs the option 'path'")
        if self.corpus == "hf" and not self.hf_name:
            raise ComponentError("task 'lm': corpus=hf needs the option 'hf_name'")
        if self.tokenizer == "file" and not self.tokenizer_path:
            raise ComponentError("task 'lm': tokenizer=file needs the option 'tokenizer_path'")
        for opt in self.options:  # an option of another corpus or tokenizer would be silently ignored: say so instead
            owner = next((o for prefix, o in OWNERS.items() if opt.name.startswith(prefix)), None)
            if owner and self.opts[owner[0]] != owner[1] and self.opts[opt.name] != opt.default:
                raise ComponentError(f"task 'lm': option '{opt.name}' is read only with {owner[0]}={owner[1]}, and "
                                     f"{owner[0]} is '{self.opts[owner[0]]}'; set {owner[0]}={owner[1]} too "
                                     f"(task.{owner[0]}={owner[1]})")
        self._tokenizer: ByteTokenizer | HFTokenizer | None = None
        self._corpus: Corpus | None = None

    @property
    def vocab_size(self) -> int:  # the model's vocabulary follows the tokenizer
        if self.tokenizer == "bytes":
            return 256
        if self.tokenizer == "bpe":
            return self.opts["vocab_size"]
        return self.tokenizer_model().vocab_size

    def key(self) -> str:
        """The options, and the tokenizer file's content (an edited tokenizer.json is another corpus)."""
        base = super().key()
        return base if self.tokenizer != "file" else f"{base}-{file_digest(self.tokenizer_path)}"

    def metrics(self) -> dict[str, str]:
        return {"val/loss": "minimize", "val/ppl": "minimize", "val/bpb": "minimize"}

    # ------------------------------------------------------------------ data
    def source(self) -> Documents:
        if self.corpus == "stdlib":
            return stdlib_documents()
        if self.corpus == "path":
            return path_documents(self.path)
        return hf_documents(self.hf_name, self.hf_split, self.hf_text_field, self.hf_config or None,
                            self.hf_data_files or None)

    def tokenizer_model(self) -> ByteTokenizer | HFTokenizer:
        """The tokenizer; a BPE is trained on the training split once and cached beside the corpus."""
        if self._tokenizer is None:
            if self.tokenizer == "bytes":
                self._tokenizer = ByteTokenizer()
            elif self.tokenizer == "file":
                self._tokenizer = HFTokenizer.from_file(self.tokenizer_path)
            else:
                path = cache_dir() / f"lm-{self.key()}.tokenizer.json"
                if path.is_file():
                    self._tokenizer = HFTokenizer.from_file(path)
                else:
                    self._tokenizer = train_bpe(self._training_text(), self.opts["vocab_size"], path)
        return self._tokenizer

    def _training_text(self):
        used = 0
        for split, piece in self.source()():
            if split == "train" and piece:
                yield piece[: self.max_bytes - used]
                used += len(piece)
                if used >= self.max_bytes:
                    return

    def corpus_data(self) -> Corpus:
        if self._corpus is None:
            folder = cache_dir() / f"lm-{self.key()}"
            if not (folder / "meta.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)  # a folder without its meta is a build that never finished
                folder.parent.mkdir(parents=True, exist_ok=True)
                build_corpus(folder, self.source(), self.tokenizer_model(), self.max_bytes)
            self._corpus = load_corpus(folder)
            if len(self._corpus.train) < self.seq_len + 1 or len(self._corpus.val) < self.seq_len + 1:
                raise ComponentError(f"task 'lm': the corpus is too small for seq_len={self.seq_len} "
                                     f"({len(self._corpus.train)} train / {len(self._corpus.val)} val tokens)")
        return self._corpus

    def data_info(self) -> dict[str, float]:
        c = self.corpus_data()
        return {"data/train_bytes": c.train_bytes, "data/train_tokens": len(c.train), "data/documents": c.documents,
                "data/bytes_per_token": c.train_bytes / max(len(c.train), 1), "data/vocab_size": c.vocab_size,
                "data/unigram_bpb": c.unigram_bpb}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        train = self.corpus_data().train
        starts = torch.randint(0, len(train) - self.seq_len, (batch_size,), generator=generator(seed, step))
        windows = torch.stack([train[s : s + self.seq_len + 1] for s in starts.tolist()]).long()
        return Batch(windows[:, :-1], windows[:, 1:])

    def eval_windows(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Validation windows over the first eval_bytes of validation text, and the bytes their targets cover."""
        c = self.corpus_data()
        covered = c.val_bytes[: self.eval_bytes + 1].numpy()
        tokens = int(np.searchsorted(np.cumsum(covered, dtype=np.int64), self.eval_bytes, side="right"))
        n = max(min(tokens, len(c.val) - 1) // self.seq_len, 1)  # at least one window (the corpus holds one)
        val = c.val[: n * self.seq_len + 1]
        x = val[: n * self.seq_len].view(n, self.seq_len).long()
        y = val[1 : n * self.seq_len + 1].view(n, self.seq_len).long()
        nbytes = int(c.val_bytes[1 : n * self.seq_len + 1].long().sum())
        return x, y, nbytes

    def evaluate(self, model: torch.nn.Module, batch_size: int = 16, final: bool = True) -> dict[str, float]:
        x, y, nbytes = self.eval_windows()
        loss = mean_loss(model, x, y, batch_size)  # nats per token
        bits = loss * y.numel() / math.log(2.0)
        return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/bpb": bits / max(nbytes, 1)}
