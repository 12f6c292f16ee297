"""Text corpora, split train/val by document, tokenized once into token files that training reads in place.

Sources (each read one document at a time, never whole):
    stdlib   the running Python's standard-library sources (always present, no download): every *.py
             file under sysconfig's stdlib path outside site-packages, in sorted order
    path     a local text file (split by bytes, read in blocks) or a folder of text files (split by file)
    hf       a Hugging Face dataset streamed with `datasets.load_dataset(..., streaming=True)` (a hub name,
             or a local loader such as 'text' / 'json' with data_files), one text field per record
Every 20th document goes to validation (deterministic); documents are joined with a blank line.

The tokens go to `train.bin` / `val.bin` in a cache folder of the corpus (plus, for validation, the bytes each token
covers, so bits per byte hold for any tokenizer) and are read back through a memory map: a corpus larger than memory
trains with flat memory, and a window is a pure function of its start, so batches stay a function of (seed, step).
"""
from __future__ import annotations

import json
import os
import shutil
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from components.options import ComponentError

VAL_EVERY = 20
SEPARATOR = b"\n\n"
BLOCK = 1 << 20  # bytes read (and tokenized) at a time from a one-file corpus
VAL_FLOOR = 1 << 16  # validation keeps at least this many bytes whatever max_bytes is

# A source: a callable (so it can be read twice: to train a tokenizer, then to tokenize) yielding (split, piece) with
# piece None where a document ends and b"" where a document's split ends without the document ending (one file).
Documents = Callable[[], Iterator[tuple[str, bytes | None]]]


# ---------------------------------------------------------------------------------------------------- sources
def stdlib_documents() -> Documents:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py") if "site-packages" not in f.relative_to(root).parts)
    return lambda: _by_document(f.read_bytes() for f in files)


def path_documents(path: str) -> Documents:
    """A checked source for `path`: a file (its last 1/20 of bytes is validation) or a folder (each file a document)."""
    p = Path(path).expanduser()
    if p.is_file():
        return lambda: _one_file(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ComponentError(f"task option 'path': folder {p} holds no files")
        return lambda: _by_document(f.read_bytes() for f in files)
    raise ComponentError(f"task option 'path': {p} is neither a file nor a folder")


def hf_documents(name: str, split: str, text_field: str, config: str | None = None,
                 data_files: str | None = None) -> Documents:
    """A checked, streamed source: the first record is read here, so a bad name or column fails before any file."""
    import datasets

    kwargs = {"data_files": data_files} if data_files else {}

    def records():
        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=True, **kwargs)
            yield from ds
        except Exception as err:  # the library raises many types; the message is what the user needs
            raise ComponentError(f"task option 'hf_name': could not load dataset {name!r} split {split!r}: "
                                 f"{err}") from None

    first = next(records(), None)
    if first is None:
        raise ComponentError(f"task option 'hf_name': dataset {name!r} split {split!r} holds no records")
    if text_field not in first:
        raise ComponentError(f"task option 'hf_text_field': {text_field!r} is not a column of {name!r}; "
                             f"columns: {', '.join(first)}")
    return lambda: _by_document(str(r[text_field]).encode("utf-8") for r in records())


def _by_document(docs) -> Iterator[tuple[str, bytes | None]]:
    for i, doc in enumerate(docs):
        split = "val" if i % VAL_EVERY == 0 else "train"
        yield split, doc
        yield split, None


def _one_file(path: Path) -> Iterator[tuple[str, bytes | None]]:
    """One document: its last 1/VAL_EVERY of bytes is validation; read in blocks cut after a newline where there is
    one, so a tokenizer never sees a word cut in two (a block without one is cut where it ends)."""
    size = path.stat().st_size
    cut = size - max(1, size // VAL_EVERY)
    with path.open("rb") as f:
        for split, end in (("train", cut), ("val", size)):
            carry = b""
            while f.tell() < end:
                block = carry + f.read(min(BLOCK, end - f.tell()))
                at = block.rfind(b"\n") + 1 if f.tell() < end else len(block)
                at = at or len(block)
                carry = block[at:]
                yield split, block[:at]
            if carry:
                yield split, carry
            yield split, (b"" if split == "train" else None)


# ---------------------------------------------------------------------------------------------------- tokens
class TokenFile:
    """A split's tokens in place on disk: len() and slices, which come back as tensors (uint8 for bytes, int64 for
    larger vocabularies). Each slice is read with its own file read, not through a memory map: the pages of a
    mapped file that a process touches count in its resident memory (readahead made that ~5 MB per batch of 16
    windows), while a read leaves them to the page cache, so memory stays flat however long a run samples."""

    def __init__(self, path: Path, dtype: str, length: int) -> None:
        self.path, self.dtype, self.length = path, np.dtype(dtype), length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: slice) -> Tensor:
        start, stop, step = index.indices(self.length)
        if step != 1:
            raise ValueError("a token file reads contiguous slices only")
        count = max(stop - start, 0)
        with self.path.open("rb") as f:
            f.seek(start * self.dtype.itemsize)
            out = np.frombuffer(f.read(count * self.dtype.itemsize), dtype=self.dtype)
        return torch.from_numpy(out.copy() if out.dtype == np.uint8 else out.astype(np.int64))


@dataclass
class Corpus:
    train: TokenFile
    val: TokenFile
    val_bytes: TokenFile  # bytes of text each validation token covers
    documents: int
    vocab_size: int
    train_bytes: int
    # cross-entropy (bits/byte) of the val tokens under the train tokens' add-one-smoothed unigram distribution:
    # what a model that ignores context scores; a language model must beat it (counted while tokenizing)
    unigram_bpb: float


def token_dtype(vocab_size: int) -> str:
    return "uint8" if vocab_size <= 256 else "uint16" if vocab_size <= 1 << 16 else "int32"


def build_corpus(folder: Path, source: Documents, tokenizer, max_bytes: int) -> None:
    """Tokenize `source` into `folder` (train.bin, val.bin, val_bytes.bin, meta.json), at most `max_bytes` of
    training text and max(max_bytes / 20, 64 KiB) of validation text, one piece at a time. Written to a temporary
    folder of this process's own and renamed, so two workers building the same corpus never read half of one."""
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = token_dtype(tokenizer.vocab_size)
    limits = {"train": max_bytes, "val": max(max_bytes // VAL_EVERY, VAL_FLOOR)}
    used = {"train": 0, "val": 0}
    tokens = {"train": 0, "val": 0}
    fresh = {"train": True, "val": True}  # the next piece starts a document (a separator goes first)
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    val_counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    documents = 0
    try:
        with (tmp / "train.bin").open("wb") as train, (tmp / "val.bin").open("wb") as val, \
                (tmp / "val_bytes.bin").open("wb") as val_bytes:
            out = {"train": train, "val": val}
            for split, piece in source():
                if not piece:  # a document (None) or its split (b"") ended: the next piece starts a new one
                    documents += piece is None
                    fresh[split] = True
                    continue
                if used[split] >= limits[split]:
                    if all(used[s] >= limits[s] for s in used):
                        break
                    continue
                text = (SEPARATOR if fresh[split] and used[split] else b"") + piece
                fresh[split] = False
                text = text[: limits[split] - used[split]]
                used[split] += len(text)
                ids, nbytes = tokenizer.encode(text)
                out[split].write(ids.astype(dtype).tobytes())
                tokens[split] += len(ids)
                (counts if split == "train" else val_counts)[:] += np.bincount(ids, minlength=len(counts))
                if split == "val":
                    val_bytes.write(nbytes.astype(np.uint16).tobytes())
        logp = np.log2((counts + 1.0) / (counts.sum() + len(counts)))
        unigram = float(-(val_counts * logp).sum() / max(used["val"], 1))
        meta = {"dtype": dtype, "train_tokens": tokens["train"], "val_tokens": tokens["val"], "documents": documents,
                "train_bytes": used["train"], "val_bytes": used["val"], "vocab_size": tokenizer.vocab_size,
                "unigram_bpb": unigram}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same corpus first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_corpus(folder: Path) -> Corpus:
    meta = json.loads((folder / "meta.json").read_text())
    return Corpus(train=TokenFile(folder / "train.bin", meta["dtype"], meta["train_tokens"]),
                  val=TokenFile(folder / "val.bin", meta["dtype"], meta["val_tokens"]),
                  val_bytes=TokenFile(folder / "val_bytes.bin", "uint16", meta["val_tokens"]),
                  documents=meta["documents"], vocab_size=meta["vocab_size"], train_bytes=meta["train_bytes"],
                  unigram_bpb=meta["unigram_bpb"])
