"""Byte-level text corpora, split train/val by document, cached as uint8 tensors.

Sources:
    stdlib   the running Python's standard-library sources (always present, no download): every *.py
             file under sysconfig's stdlib path outside site-packages, in sorted order
    path     a local text file (split by bytes) or a folder of text files (split by file)
    hf       a Hugging Face dataset via `datasets.load_dataset` (a hub name, or a local loader such as
             'text' / 'json' with data_files), one text field per record
Every 20th document goes to validation (deterministic); documents are joined with a blank line.
"""
from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from components.options import ComponentError

VAL_EVERY = 20
SEPARATOR = b"\n\n"


@dataclass
class Corpus:
    train: Tensor  # uint8
    val: Tensor  # uint8
    documents: int

    def unigram_bits_per_byte(self) -> float:
        """Cross-entropy (bits/byte) of the val bytes under the train bytes' unigram distribution (add-one
        smoothed): what a model that ignores context scores. A language model must beat it."""
        counts = torch.bincount(self.train.long(), minlength=256).double() + 1.0
        logp = torch.log2(counts / counts.sum())
        val_counts = torch.bincount(self.val.long(), minlength=256).double()
        return float(-(val_counts * logp).sum() / val_counts.sum())


def _join(docs: list[bytes], max_bytes: int) -> Tensor:
    blob = SEPARATOR.join(docs)[:max_bytes]
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone() if blob else torch.zeros(0, dtype=torch.uint8)


def split_documents(docs: list[bytes], max_bytes: int) -> Corpus:
    if len(docs) == 1:  # one document: the last 1/VAL_EVERY of its bytes
        data = docs[0][:max_bytes]
        cut = len(data) - max(1, len(data) // VAL_EVERY)
        return Corpus(_join([data[:cut]], max_bytes), _join([data[cut:]], max_bytes), 1)
    val = [d for i, d in enumerate(docs) if i % VAL_EVERY == 0]
    train = [d for i, d in enumerate(docs) if i % VAL_EVERY != 0]
    return Corpus(_join(train, max_bytes), _join(val, max(max_bytes // VAL_EVERY, 1 << 16)), len(docs))


def stdlib_documents() -> list[bytes]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py") if "site-packages" not in f.relative_to(root).parts)
    return [f.read_bytes() for f in files]


def path_documents(path: str) -> list[bytes]:
    p = Path(path).expanduser()
    if p.is_file():
        return [p.read_bytes()]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ComponentError(f"task option 'path': folder {p} holds no files")
        return [f.read_bytes() for f in files]
    raise ComponentError(f"task option 'path': {p} is neither a file nor a folder")


def hf_documents(name: str, split: str, text_field: str, config: str | None = None,
                 data_files: str | None = None) -> list[bytes]:
    import datasets

    kwargs = {"data_files": data_files} if data_files else {}
    try:
        ds = datasets.load_dataset(name, config, split=split, **kwargs)
    except Exception as err:  # the library raises many types; the message is what the user needs
        raise ComponentError(f"task option 'hf_name': could not load dataset {name!r} split {split!r}: {err}") from None
    if text_field not in ds.column_names:
        raise ComponentError(f"task option 'hf_text_field': {text_field!r} is not a column of {name!r}; "
                             f"columns: {', '.join(ds.column_names)}")
    return [str(t).encode("utf-8") for t in ds[text_field]]
