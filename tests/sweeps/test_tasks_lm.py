"""The language-modelling task: corpora (stdlib, local files, Hugging Face loaders on local files), the split,
determinism, and metrics on hand-made cases."""
from __future__ import annotations

import json
import math

import pytest
import torch

from components import ComponentError
from components.tasks import TASKS
from components.tasks.corpus import VAL_EVERY


class FixedLogits(torch.nn.Module):
    """Every position predicts the same distribution over bytes."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(probs.log())

    def forward(self, tokens):
        return self.logits.expand(*tokens.shape, -1), None


def test_stdlib_corpus_is_deterministic_and_split_by_file():
    a, b = TASKS.create("lm", max_bytes=1 << 20), TASKS.create("lm", max_bytes=1 << 20)
    info = a.data_info()
    assert info["data/documents"] > 500 and info["data/train_bytes"] == 1 << 20
    assert 3.0 < info["data/unigram_bpb"] < 8.0
    assert torch.equal(a.train_batch(7, 4, seed=1).tokens, b.train_batch(7, 4, seed=1).tokens)
    assert not torch.equal(a.train_batch(7, 4, seed=1).tokens, a.train_batch(8, 4, seed=1).tokens)
    batch = a.train_batch(0, 2, seed=0)
    assert torch.equal(batch.tokens[:, 1:], batch.targets[:, :-1])  # next-byte targets


def test_metrics_of_a_uniform_and_a_known_distribution(tmp_path):
    (tmp_path / "ab.txt").write_bytes(b"ab" * 5000)
    task = TASKS.create("lm", corpus="path", path=str(tmp_path / "ab.txt"), seq_len=16)
    # two equally likely bytes: 1 bit (plus the add-one smoothing over 256 symbols)
    assert task.data_info()["data/unigram_bpb"] == pytest.approx(1.0, abs=0.05)
    uniform = task.evaluate(FixedLogits(torch.full((256,), 1 / 256)))
    assert uniform["val/bpb"] == pytest.approx(8.0) and uniform["val/ppl"] == pytest.approx(256.0)
    half = torch.full((256,), 1e-12)
    half[ord("a")] = half[ord("b")] = 0.5
    assert task.evaluate(FixedLogits(half / half.sum()))["val/bpb"] == pytest.approx(1.0, abs=1e-6)


def test_folder_corpus_splits_every_twentieth_file(tmp_path):
    for i in range(40):
        (tmp_path / f"doc{i:02d}.txt").write_text(("val " if i % VAL_EVERY == 0 else "train ") * 50)
    task = TASKS.create("lm", corpus="path", path=str(tmp_path), seq_len=16)
    corpus = task.corpus_data()
    assert corpus.documents == 40
    assert b"val" in bytes(corpus.val.tolist()) and b"val" not in bytes(corpus.train.tolist())


def test_hugging_face_loader_on_local_json_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"record {i} " * 20}) for i in range(60)))
    task = TASKS.create("lm", corpus="hf", hf_name="json", hf_data_files=str(path), hf_text_field="body", seq_len=16)
    corpus = task.corpus_data()
    assert corpus.documents == 60 and b"record 0 " in bytes(corpus.val[:200].tolist())
    with pytest.raises(ComponentError, match="'text' is not a column"):
        TASKS.create("lm", corpus="hf", hf_name="json", hf_data_files=str(path), seq_len=16, max_bytes=4096).corpus_data()


def test_bad_corpus_options_name_the_option(tmp_path):
    with pytest.raises(ComponentError, match="corpus=path needs the option 'path'"):
        TASKS.create("lm", corpus="path")
    with pytest.raises(ComponentError, match="neither a file nor a folder"):
        TASKS.create("lm", corpus="path", path=str(tmp_path / "missing")).corpus_data()
    with pytest.raises(ComponentError, match="option 'corpus'"):
        TASKS.create("lm", corpus="wiki")
    assert math.isfinite(TASKS.create("lm", max_bytes=4096, seq_len=16).data_info()["data/unigram_bpb"])
