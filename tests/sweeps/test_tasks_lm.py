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
    assert info["data/documents"] > 40 and info["data/train_bytes"] == 1 << 20  # the documents read to fill it
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
    assert b"val" in bytes(corpus.val[:].tolist()) and b"val" not in bytes(corpus.train[:].tolist())


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


WORDS = ["memory", "recall", "gate", "delta", "tokens", "über", "naïve", "état", "✓", "key", "value", "query"]


def write_text_corpus(folder, documents: int = 60, words: int = 400, seed: int = 0):
    """A folder of documents of random words (some with multi-byte UTF-8 characters)."""
    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(documents):
        idx = torch.randint(0, len(WORDS), (words,), generator=gen).tolist()
        (folder / f"doc{d:03d}.txt").write_text(" ".join(WORDS[i] for i in idx) + "\n", encoding="utf-8")
    return folder


def test_token_byte_accounting_adds_up_to_the_text_for_any_tokenizer(tmp_path):
    from components.tasks.tokenizers import ByteTokenizer, train_bpe

    text = "naïve über ✓ état — memory gates\n".encode() * 50 + b"\xff invalid byte"
    bpe = train_bpe(iter([text]), 300, tmp_path / "tok.json")
    ids, covered = bpe.encode(text)
    # every byte of the text is covered once (the invalid byte became U+FFFD: 3 bytes)
    assert covered.sum() == len(text.decode("utf-8", errors="replace").encode()) and (covered >= 0).all()
    assert len(ids) < len(text) / 2  # merges happened
    ids, covered = ByteTokenizer().encode(text)
    assert len(ids) == covered.sum() == len(text)


def test_a_bpe_trained_on_the_training_split_is_cached_and_bits_per_byte_compare_across_tokenizers(tmp_path):
    corpus = write_text_corpus(tmp_path / "text")
    opts = {"corpus": "path", "path": str(corpus), "seq_len": 32}
    bpe = TASKS.create("lm", tokenizer="bpe", vocab_size=400, **opts)
    assert bpe.vocab_size == 400
    info = bpe.data_info()
    from components.tasks.base import cache_dir

    assert list(cache_dir().glob(f"lm-{bpe.key()}.tokenizer.json"))  # beside the corpus, reused next time
    # the trained vocabulary stops where the corpus has no more pairs to merge (a few words here); the model's stays
    assert info["data/bytes_per_token"] > 2.0 and 256 < info["data/vocab_size"] <= 400
    assert 0.5 < info["data/unigram_bpb"] < 8.0
    # a uniform model scores log2(V) bits per token: per byte that is log2(V) tokens/bytes of the scored text
    x, y, nbytes = bpe.eval_windows()
    uniform = bpe.evaluate(FixedLogits(torch.full((400,), 1 / 400)))
    assert uniform["val/ppl"] == pytest.approx(400.0, rel=1e-5)  # fp32 logits
    assert uniform["val/bpb"] == pytest.approx(math.log2(400) * y.numel() / nbytes, rel=1e-5)
    # the same text in bytes: the unigram baselines of both tokenizations are bits per byte of the same text
    raw = TASKS.create("lm", **opts)
    assert raw.vocab_size == 256 and raw.data_info()["data/bytes_per_token"] == 1.0
    assert bpe.data_info()["data/unigram_bpb"] < raw.data_info()["data/unigram_bpb"]  # BPE's unigram knows words
    again = TASKS.create("lm", tokenizer="bpe", vocab_size=400, **opts)
    assert torch.equal(again.train_batch(3, 4, seed=0).tokens, bpe.train_batch(3, 4, seed=0).tokens)


def test_a_local_tokenizer_file_is_used_and_its_content_keys_the_cache(tmp_path):
    from components.tasks.tokenizers import train_bpe

    corpus = write_text_corpus(tmp_path / "text", documents=30)
    tok_path = tmp_path / "tokenizer.json"
    train_bpe(iter([(corpus / "doc001.txt").read_bytes()]), 280, tok_path)
    task = TASKS.create("lm", corpus="path", path=str(corpus), tokenizer="file", tokenizer_path=str(tok_path),
                        seq_len=16)
    assert task.vocab_size == 280 and task.data_info()["data/bytes_per_token"] > 1.0
    key = task.key()
    train_bpe(iter([(corpus / "doc002.txt").read_bytes() * 3]), 290, tok_path)  # another tokenizer, same path
    assert TASKS.create("lm", corpus="path", path=str(corpus), tokenizer="file", tokenizer_path=str(tok_path),
                        seq_len=16).key() != key
    with pytest.raises(ComponentError, match="tokenizer=file needs the option 'tokenizer_path'"):
        TASKS.create("lm", tokenizer="file")
    with pytest.raises(ComponentError, match="option 'vocab_size' is read only with tokenizer=bpe"):
        TASKS.create("lm", vocab_size=1000)
    with pytest.raises(ComponentError, match="is not a tokenizers JSON file"):
        (tmp_path / "bad.json").write_text("{}")
        TASKS.create("lm", tokenizer="file", tokenizer_path=str(tmp_path / "bad.json")).vocab_size


def test_a_tokenized_language_model_trains_end_to_end_offline(tmp_path, monkeypatch):
    """The real trainer on a BPE-tokenized local corpus: the model's vocabulary follows the tokenizer, and the run
    reports per-token perplexity and bits per byte."""
    from sweeps.tracking import Tracker
    from sweeps.train.run import run_training

    corpus = write_text_corpus(tmp_path / "text")
    model = {"dim": 32, "layers": 1, "memory": {"heads": 2, "chunk_size": 16, "structure": "linear", "bias": "l2",
                                                 "retention": "decay", "algorithm": "gd"}}
    task = {"name": "lm", "corpus": "path", "path": str(corpus), "tokenizer": "bpe", "vocab_size": 320,
            "seq_len": 32, "eval_bytes": 4096}
    train = {"steps": 30, "batch_size": 8, "eval_every": 30, "log_every": 10, "checkpoint_every": 30, "warmup": 2,
             "lr": 3e-3, "progress": False, "threads": 1}
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="bpe")
    result = run_training({"model": model, "task": task, "train": train}, tmp_path / "run", tracker=tracker)
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracker.uri).get_run(tracker.run_id)
    m, per_token = result.metrics, run.data.metrics["data/bytes_per_token"]
    assert per_token > 2.0 and m["val/ppl"] < 100  # far below a uniform model's 320 after 30 steps
    # bits per byte = nats per token / ln 2 / bytes per token (of the scored text, close to the training text's)
    assert m["val/bpb"] == pytest.approx(m["val/loss"] / math.log(2) / per_token, rel=0.2)
    assert run.data.params["task.tokenizer"] == "bpe" and run.data.metrics["data/vocab_size"] <= 320
    assert run.data.params["model.vocab_size"] == "320"


def test_a_corpus_four_times_the_training_process_memory_trains_with_flat_memory(tmp_path):
    """Streaming: a training process is measured on a 1 MB corpus (peak RSS P, mostly torch itself); a one-file
    corpus of 4 P bytes is then tokenized in 1 MiB blocks and trained on through a memory map, and the process's
    peak RSS stays within a few MiB of P: it never holds the corpus (the byte tokenizer: as many tokens as bytes)."""
    import os
    import subprocess
    import sys

    line = b"".join(w.encode() + b" " for w in WORDS) + b"\n"
    block = line * (1_000_000 // len(line))
    code = ("import sys, resource, torch; from components.tasks import TASKS; "
            "t = TASKS.create('lm', corpus='path', path=sys.argv[1], max_bytes=1 << 40, seq_len=256); "
            "m = torch.nn.Embedding(256, 8); "
            "[m(t.train_batch(s, 16, seed=0).tokens).sum().backward() for s in range(200)]; "
            "print(len(t.corpus_data().train), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")

    def peak(path):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                             env={**os.environ})
        return tuple(map(int, out.stdout.split()))

    (tmp_path / "small.txt").write_bytes(block)
    _, baseline = peak(tmp_path / "small.txt")
    with (tmp_path / "big.txt").open("wb") as f:
        for _ in range(4 * baseline // len(block) + 1):
            f.write(block)
    tokens, big = peak(tmp_path / "big.txt")
    assert tokens > 3.5 * big  # the training split alone is several times what the process ever held
    assert big - baseline < 24 << 20, f"peak RSS {baseline >> 20} -> {big >> 20} MiB for a {tokens >> 20} MiB corpus"
