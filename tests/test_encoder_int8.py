"""The shared encoder's int8 copy: its parity with fp32 on a workspace's texts,
and choosing it per workspace (shown the parity first; its own encoder id, so
models registered for fp32 refuse clearly)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tests.cli_support import run
from workstation import encoder as enc_mod
from workstation import encoder_variants as ev
from workstation.workspace import Workspace

pytestmark = pytest.mark.slow
N_PAIRS = 30


@pytest.fixture(autouse=True)
def fp32_after():
    """CLI calls in this process make the workspace's choice the default: reset it."""
    yield
    enc_mod.set_default_variant("fp32")


@pytest.fixture
def workspace(tmp_path, capsys, hh_rlhf_path):
    """A workspace holding the first HH-RLHF pairs and a linear model on fp32
    embeddings (prompt + response)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    subset = tmp_path / "hh.jsonl"
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as f:
        subset.write_text("".join(next(f) for _ in range(N_PAIRS)), encoding="utf-8")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 768)).astype(np.float32)
    fit = LogisticRegression(max_iter=500).fit(x, (x[:, 0] > 0).astype(int))
    model = tmp_path / "lr.onnx"
    model.write_bytes(to_onnx(fit, x[:1], options={id(fit): {"zipmap": False}})
                      .SerializeToString())
    w = ["--workspace", str(tmp_path / "ws.duckdb")]
    run(capsys, *w, "import", "pairs", str(subset), "--name", "hh")
    run(capsys, *w, "model", "add", str(model), "--name", "lr", "--input", "text-embedding")
    return w, model


def test_prepare_int8_reports_true_parity_on_the_workspace_texts(workspace, capsys):
    w, _ = workspace
    out = run(capsys, *w, "encoder", "prepare", "--int8", "--sample", "40")
    info = out["int8"]
    fp32, int8 = enc_mod.get_encoder(variant="fp32"), enc_mod.get_encoder(variant="int8")
    assert out["encoder"] == fp32.id and info["encoder"] == int8.id != fp32.id
    assert info["encoder"].startswith("all-MiniLM-L6-v2-int8@")
    assert info["size_bytes"] < info["fp32_size_bytes"] / 3
    parity = info["parity"]
    with Workspace.open(w[1], read_only=True) as ws:
        texts = ev.sample_texts(ws, 40)
    assert parity["n_texts"] == len(texts) == 40
    cos = np.sum(fp32.encode(texts) * int8.encode(texts), axis=1)
    assert parity["min_cosine"] == pytest.approx(cos.min(), abs=1e-5)
    assert parity["mean_cosine"] == pytest.approx(cos.mean(), abs=1e-6)
    assert 0.9 < parity["min_cosine"] < 1.0 and parity["mean_cosine"] > 0.98

    again = run(capsys, "encoder", "prepare", "--int8")  # no workspace: cached, no parity
    assert again["int8"]["encoder"] == int8.id and again["int8"]["parity"] is None


def test_switching_shows_parity_first_and_keys_embeddings_by_the_int8_id(workspace, capsys,
                                                                         tmp_path):
    w, model = workspace
    preview = run(capsys, *w, "encoder", "use", "int8", "--sample", "20")
    assert preview["switched"] is False and preview["variant"] == "fp32"
    assert preview["parity"]["n_texts"] == 20 and preview["parity"]["min_cosine"] > 0.9
    with Workspace.open(w[1], read_only=True) as ws:
        assert ev.workspace_variant(ws) == "fp32"  # nothing switched without --yes

    done = run(capsys, *w, "encoder", "use", "int8", "--yes", "--sample", "20")
    int8 = enc_mod.get_encoder(variant="int8")
    assert done["switched"] is True and done["encoder_id"] == int8.id
    assert done["parity"]["n_texts"] == 20 and done["other_encoder_models"] == ["lr@1"]

    refused = run(capsys, *w, "audit", "--model", "lr@1", "--dataset", "hh", ok=False)
    assert "registered for encoder all-MiniLM-L6-v2@" in refused["error"]
    assert int8.id in refused["error"]

    added = run(capsys, *w, "model", "add", str(model), "--name", "lr8",
                "--input", "text-embedding")
    assert added["manifest"]["input"]["encoder"] == int8.id
    audit = run(capsys, *w, "audit", "--model", "lr8@1", "--dataset", "hh")
    assert audit["n_examples"] == N_PAIRS
    with Workspace.open(w[1], read_only=True) as ws:
        ids = dict(ws.execute("SELECT encoder_id, count(*) FROM embeddings "
                              "GROUP BY encoder_id").fetchall())
        prompt = ws.execute("SELECT prompt FROM examples ORDER BY id LIMIT 1").fetchall()[0][0]
        stored = np.array(ws.execute(
            "SELECT vec FROM embeddings WHERE encoder_id = ? AND text_sha256 = sha256(?)",
            [int8.id, prompt]).fetchall()[0][0], dtype=np.float32)
    assert list(ids) == [int8.id] and ids[int8.id] >= 2 * N_PAIRS
    # Dynamic int8 scales activations per batch, so a text's int8 vector moves a
    # little with its batch-mates: close to the int8 one alone, not the fp32 one.
    alone = int8.encode([prompt])[0]
    fp32 = enc_mod.get_encoder(variant="fp32").encode([prompt])[0]
    assert float(stored @ alone) > 0.98
    assert np.abs(stored - fp32).max() > 1e-3

    back = run(capsys, *w, "encoder", "use", "fp32")
    assert back["switched"] is True and back["parity"] is None
    assert back["other_encoder_models"] == ["lr8@1"]
    run(capsys, *w, "audit", "--model", "lr@1", "--dataset", "hh")  # fp32 model scores again
