"""The text encoder: parity with sentence-transformers, the workspace cache,
no torch at scoring time, and the one-time conversion's cache handling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.bench_encoder import load_texts
from workstation import encoder as enc_mod
from workstation.encoder import Encoder, embed_texts, get_encoder, prepare_encoder
from workstation.errors import Cancelled
from workstation.progress import Progress
from workstation.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return get_encoder()


class CountingEncoder:
    """Wraps an encoder and records every text it is asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.id, self.dim = inner, inner.id, inner.dim
        self.seen: list[str] = []

    def encode(self, texts, progress=None, batch_size=64):
        self.seen.extend(texts)
        return self.inner.encode(texts, progress, batch_size)


class FakeEncoder:
    """Deterministic pseudo-vectors: exercises the cache at scale without the model."""

    id, dim = "fake@000000000000", 8

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts, progress=None, batch_size=64):
        self.calls += 1
        seeds = np.array([hash(t) % 100003 for t in texts], dtype=np.float32)
        return (seeds[:, None] + np.arange(self.dim, dtype=np.float32)).astype(np.float32)


def count_rows(ws: Workspace, encoder_id: str) -> int:
    return ws.execute("SELECT count(*) FROM embeddings WHERE encoder_id = ?",
                      [encoder_id]).fetchall()[0][0]


# -- parity -----------------------------------------------------------------
@pytest.mark.slow
def test_parity_with_sentence_transformers(hh_rlhf_path, encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import sentence_transformers as st  # the `test` extra: a missing one must fail
    texts = load_texts(hh_rlhf_path)
    longest = sorted(texts, key=len, reverse=True)[:10]
    sample = texts[:190] + longest
    lengths = encoder.tokenize_padded(longest)["attention_mask"].sum(axis=1)
    assert lengths.max() == 256  # the long ones really are truncated

    model = st.SentenceTransformer(str(enc_mod.model_dir()), device="cpu")
    reference = model.encode(sample, batch_size=64, convert_to_numpy=True)
    ours = encoder.encode(sample)

    assert ours.dtype == np.float32 and ours.shape == (200, 384)
    cosines = np.sum(ours * reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() >= 0.9999, f"worst text: {sample[int(cosines.argmin())][:80]!r}"


# -- encode -----------------------------------------------------------------
def test_encode_order_norms_and_none(encoder):
    texts = ["The cat sat on the mat.", None, "A much longer sentence " * 20, "", "short"]
    vecs = encoder.encode(texts, batch_size=2)
    assert vecs.shape == (5, encoder.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs[1], vecs[3], atol=1e-6)  # None is embedded as ""
    one_by_one = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(vecs, one_by_one, atol=1e-5)  # row order = input order


def test_encode_batches_by_token_budget_in_input_order(encoder):
    texts = [f"word {i} " * (1 + (i * 37) % 90) for i in range(60)]  # 2..~180 tokens, shuffled
    runs, rows = encoder.runs, encoder.rows_encoded
    batched = encoder.encode(texts, token_budget=1024)
    lengths = encoder.tokenize_padded(texts)["attention_mask"].sum(axis=1)
    # Each run carried at most 1024 padded tokens (a lone longer text goes alone).
    assert encoder.runs - runs >= int(np.ceil(lengths.sum() / 1024))
    assert encoder.rows_encoded - rows == 60
    one_by_one = np.vstack([encoder.encode([t]) for t in texts])  # no padding at all
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)  # row i is text i's


def test_encode_encodes_identical_texts_once(encoder):
    texts = ["the same prompt", "a response", "the same prompt", None, "", "a response"]
    rows = encoder.rows_encoded
    vecs = encoder.encode(texts)
    assert encoder.rows_encoded - rows == 3  # "the same prompt", "a response", ""
    assert np.array_equal(vecs[0], vecs[2]) and np.array_equal(vecs[1], vecs[5])
    assert np.array_equal(vecs[3], vecs[4])
    np.testing.assert_allclose(vecs, np.vstack([encoder.encode([t]) for t in texts]),
                               atol=1e-5)


def test_audit_of_pairs_encodes_each_distinct_text_once(tmp_path, encoder):
    """Import -> audit on pairs sharing prompts: every distinct text (prompts
    included) is fed to the encoder exactly once."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from workstation.audits import run_audit
    from workstation.datasets import import_dataset
    from workstation.models import add_model_bytes

    path = tmp_path / "pairs.jsonl"
    records = [{"prompt": f"shared prompt {i % 3}", "chosen": f"good answer {i}",
                "rejected": f"bad answer {i % 4}"} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    x = np.random.default_rng(0).standard_normal((32, 768)).astype(np.float32)
    fit = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    onx = to_onnx(fit, x[:1], options={id(fit): {"zipmap": False}}).SerializeToString()
    with Workspace.open(tmp_path / "ws.duckdb") as ws:
        import_dataset(ws, "pairs", path, "p", format="trl-jsonl")
        add_model_bytes(ws, onx, "lr", "text-embedding", encoder=encoder)
        rows = encoder.rows_encoded
        run = run_audit(ws, "lr@1", "p", encoder=encoder)
    assert run.n_examples == 12
    assert encoder.rows_encoded - rows == 3 + 12 + 4  # prompts, chosen, rejected: distinct


def test_encode_empty_list(encoder):
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_encoder_identity(encoder):
    name, _, digest = encoder.id.partition("@")
    assert name == "all-MiniLM-L6-v2" and len(digest) == 12
    assert int(digest, 16) >= 0 and encoder.dim == 384
    assert get_encoder() is encoder  # once per process


def test_encode_reports_progress_and_cancels(encoder):
    steps = []
    encoder.encode([f"text {i}" for i in range(10)], Progress(lambda s, d, t: steps.append((d, t))),
                   batch_size=4)
    assert steps[0] == (0, 10) and steps[-1] == (10, 10)

    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        encoder.encode(["a", "b"], progress)


# -- embed_texts and the workspace cache ---------------------------------------
def test_embed_texts_encodes_each_text_once(ws, encoder):
    spy = CountingEncoder(encoder)
    texts = ["alpha", "beta", "alpha", None, "gamma", "", "beta"]
    assert ws.meta("workspace_id")  # leaves an unread result on the connection
    first = embed_texts(ws, texts, encoder=spy)
    assert sorted(spy.seen) == sorted(["alpha", "beta", "gamma", ""])  # duplicates once
    assert count_rows(ws, spy.id) == 4
    np.testing.assert_allclose(first, encoder.encode(texts), atol=1e-5)  # order preserved
    assert np.array_equal(first[0], first[2]) and np.array_equal(first[3], first[5])

    spy.seen.clear()
    second = embed_texts(ws, texts, encoder=spy)
    assert spy.seen == [] and np.array_equal(first, second)  # all from the cache

    third = embed_texts(ws, ["delta", "alpha"], encoder=spy)
    assert spy.seen == ["delta"] and count_rows(ws, spy.id) == 5
    assert np.array_equal(third[1], first[0])


def test_embed_texts_read_only_workspace_is_not_written(tmp_path, encoder):
    path = tmp_path / "ws.duckdb"
    with Workspace.open(path) as ws:
        embed_texts(ws, ["cached"], encoder=encoder)
    with Workspace.open(path, read_only=True) as ro:
        spy = CountingEncoder(encoder)
        vecs = embed_texts(ro, ["cached", "new one"], encoder=spy)
        assert spy.seen == ["new one"] and vecs.shape == (2, encoder.dim)
        assert count_rows(ro, encoder.id) == 1
    with Workspace.open(path, read_only=True) as ro:
        assert count_rows(ro, encoder.id) == 1


def test_embed_texts_cancel_leaves_cache_unchanged(ws, encoder):
    progress = Progress(lambda stage, done, total: progress.cancel() if done else None)
    with pytest.raises(Cancelled):
        embed_texts(ws, [f"sentence number {i}" for i in range(100)], encoder=encoder,
                    progress=progress)
    assert count_rows(ws, encoder.id) == 0


def test_embed_texts_bulk_path_at_scale(ws):
    fake = FakeEncoder()
    texts = [f"text {i % 40_000}" for i in range(60_000)]
    first = embed_texts(ws, texts, encoder=fake)
    assert count_rows(ws, fake.id) == 40_000 and fake.calls == 1
    second = embed_texts(ws, texts, encoder=fake)
    assert fake.calls == 1 and np.array_equal(first, second)
    np.testing.assert_array_equal(first[40_000:], first[:20_000])


def test_embed_texts_empty(ws, encoder):
    assert embed_texts(ws, [], encoder=encoder).shape == (0, encoder.dim)


# -- no torch at scoring time -------------------------------------------------
def test_scoring_does_not_import_torch(encoder):
    code = (
        "import sys\n"
        "import workstation.encoder as e\n"
        "assert 'torch' not in sys.modules, 'import pulled in torch'\n"
        "v = e.get_encoder().encode(['hello'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(v.shape)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 384)"


# -- the conversion cache ---------------------------------------------------
@pytest.fixture
def copied_cache(tmp_path, monkeypatch, encoder):
    """A private cache holding a copy of the real converted model."""
    real_onnx = prepare_encoder()
    monkeypatch.setenv("WORKSTATION_CACHE", str(tmp_path / "cache"))
    folder = enc_mod.cache_dir()
    folder.mkdir(parents=True)
    shutil.copy2(real_onnx, folder / real_onnx.name)
    shutil.copy2(real_onnx.with_suffix(".json"), folder / real_onnx.with_suffix(".json").name)
    return folder / real_onnx.name


def test_prepare_reuses_a_matching_conversion(copied_cache, monkeypatch):
    def no_convert(*args):
        raise AssertionError("converted again although the cache matched")

    monkeypatch.setattr(enc_mod, "_convert", no_convert)
    assert prepare_encoder() == copied_cache


def test_prepare_reconverts_on_mismatch_and_writes_atomically(copied_cache, monkeypatch):
    record_path = copied_cache.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record["source_sha256"] = "0" * 64
    record_path.write_text(json.dumps(record))

    def failing_convert(folder, tmp, progress):
        (tmp / "final.onnx").write_bytes(b"half a model")
        raise RuntimeError("crash mid-conversion")

    monkeypatch.setattr(enc_mod, "_convert", failing_convert)
    before = copied_cache.stat().st_size
    with pytest.raises(RuntimeError):
        prepare_encoder()
    assert copied_cache.stat().st_size == before  # the old file was not clobbered
    assert sorted(p.name for p in copied_cache.parent.iterdir()) == sorted(
        [copied_cache.name, record_path.name])  # no temp files left behind

    def fake_convert(folder, tmp, progress):
        (tmp / "final.onnx").write_bytes(b"new model")
        return {}

    monkeypatch.setattr(enc_mod, "_convert", fake_convert)
    assert prepare_encoder() == copied_cache
    assert copied_cache.read_bytes() == b"new model"
    record = json.loads(record_path.read_text())
    assert record["source_sha256"] == enc_mod.source_sha256()
    assert record["onnx_size_bytes"] == len(b"new model")
    assert sorted(p.name for p in copied_cache.parent.iterdir()) == sorted(
        [copied_cache.name, record_path.name])
