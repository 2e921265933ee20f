"""Hostile and broken input: every file of tests/hostile/corpus (and a few
made here because they are big or need a real signed release) is fed to the
CLI command named in tests/hostile/CORPUS.md. Each must end with exactly one
line on stderr starting "error:", no traceback and no "internal error", a
non-zero exit, in bounded time, and the workspace's logical content
(``content_hash``) unchanged. Most cases run in-process (fast); a
representative subset runs instead as a subprocess with a timeout, which
proves best that nothing hangs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.hostile.make_corpus import CASES, CORPUS, MANIFEST, Case, is_case, manifest_text
from workstation import cli, releases, review
from workstation.verify import content_hash
from workstation.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
TIME_LIMIT = 60.0  # seconds per command
BAD = [c for c in CASES if is_case(c)]
BY_FILE = {c.file: c for c in BAD}
# Oracle queries are read by oracle.read_queries once cli.cmd_oracle calls it;
# until then the CLI's own reader lets these through as internal errors.
# One of each kind of input, run as a real process (the Loop one proves the
# test run is stopped rather than hanging).
SUBPROCESS_SUBSET = ["pairs_deep_nesting.jsonl", "labels_non_utf8.csv",
                     "pairs_truncated.parquet", "demos_pickled.npz", "demos_huge_declared.npz",
                     "model_infinite_loop.onnx", "model_constant_of_shape.onnx",
                     "release_zip_slip.zip", "oracle_obs_not_list.jsonl"]


# -- the workspace -----------------------------------------------------------

def _obs_model(width: int = 4) -> bytes:
    w = numpy_helper.from_array(np.linspace(-1, 1, width, dtype=np.float32).reshape(width, 1), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["reward"])],
        "rm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("reward", TensorProto.FLOAT, ["N", 1])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A workspace with one dataset of each kind, an observation model obs@1
    (audited, reviewed, released) and a text-embedding model text@1."""
    from workstation.audits import run_audit
    from workstation.datasets import import_dataset
    from workstation.encoder import get_encoder
    from workstation.models import add_model_bytes
    from workstation.oracle import SafetyOracle

    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "ws.duckdb"
    rng = np.random.default_rng(0)
    with Workspace.open(path) as ws:
        import_dataset(ws, "pairs", _write_lines(folder / "pairs.jsonl", [
            {"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)]),
            "pairs")
        import_dataset(ws, "labels", _write_lines(folder / "labels.jsonl", [
            {"prompt": f"q{i}", "response": f"r{i}", "label": i % 2} for i in range(5)]), "labels")
        import_dataset(ws, "demos", _write_lines(folder / "demos.jsonl", [
            {"obs": rng.normal(0, 1, (6, 4)).round(3).tolist(), "acts": [0, 1, 0, 1, 0]}
            for _ in range(4)]), "demos")
        add_model_bytes(ws, _obs_model(), "obs", "observation")
        width = get_encoder().dim
        add_model_bytes(ws, _obs_model(width), "text", "text-embedding")
        run_audit(ws, "obs@1", "demos")
        first = ws.execute("SELECT min(id) FROM examples").fetchall()[0][0]
        review.apply(ws, [review.Edit(first, "note", "looked at it", "check")])
        rel = releases.release(ws, "obs@1")
        releases.export_public_key(ws, folder / "trusted.pub", rel.key_id)
        for model in ("obs@1", "text@1"):  # record pending coverage before any case runs
            SafetyOracle.from_workspace(ws, model)
    return path


@pytest.fixture
def workspace(template, tmp_path) -> Path:
    """A copy of the template, so that a case which wrongly succeeds cannot
    change what the next case sees."""
    path = tmp_path / "ws.duckdb"
    path.write_bytes(template.read_bytes())
    (tmp_path / "trusted.pub").write_bytes((template.parent / "trusted.pub").read_bytes())
    return path


def logical(path: Path) -> str:
    with Workspace.open(path, read_only=True) as ws:
        return content_hash(ws)


# -- running the CLI -----------------------------------------------------------

def command(case: Case, path: Path) -> list[str]:
    args = [a.replace("{file}", str(path)).replace("{dir}", str(CORPUS)) for a in case.command]
    return args


def run_in_process(args: list[str], capfd) -> tuple[int, str, str, float]:
    """``main(args)`` on a thread, so that a hang fails the test instead of the run."""
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", cli.main(args)),
                              daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(TIME_LIMIT)
    elapsed = time.monotonic() - start
    out, err = capfd.readouterr()
    assert not thread.is_alive(), f"still running after {TIME_LIMIT:g} s: {args}"
    assert "code" in result, f"main() raised instead of returning: {err[-2000:]}"
    return result["code"], out, err, elapsed


def run_subprocess(args: list[str]) -> tuple[int, str, str, float]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "workstation", *args], capture_output=True,
                          text=True, timeout=TIME_LIMIT, cwd=REPO, env=env)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def assert_refused(code: int, out: str, err: str, elapsed: float, expect: str,
                   as_json: bool) -> None:
    assert code == 1, f"exit {code}; stderr: {err[:2000]}"
    assert err.count("\n") == 1 and err.endswith("\n"), f"not exactly one line:\n{err[:3000]}"
    assert err.startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert re.search(expect, err), f"{expect!r} not in: {err}"
    assert elapsed < TIME_LIMIT
    if as_json:
        payload = json.loads(out.strip().splitlines()[-1])
        assert payload["ok"] is False


def refuse_in_process(workspace: Path, args: list[str], expect: str, capfd) -> None:
    before = logical(workspace)
    result = run_in_process(["--workspace", str(workspace), *args, "--json"], capfd)
    assert_refused(*result, expect, as_json=True)
    assert logical(workspace) == before, "the workspace's logical content changed"


# -- the corpus ----------------------------------------------------------------

def test_corpus_on_disk_matches_the_table_and_manifest():
    on_disk = {p.name for p in CORPUS.iterdir()}
    assert on_disk == {c.file for c in CASES}, "run python tests/hostile/make_corpus.py"
    assert MANIFEST.read_text(encoding="utf-8") == manifest_text()
    assert len(BAD) >= 40
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 2_000_000
    for case in BAD:
        assert (CORPUS / case.file).read_bytes() == case.make(), case.file


@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(c, id=c.file)
                                  for c in BAD if c.file not in SUBPROCESS_SUBSET])
def test_bad_file_is_refused_in_one_line(workspace, case, capfd):
    refuse_in_process(workspace, command(case, CORPUS / case.file), case.expect, capfd)


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_SUBSET)
def test_bad_file_is_refused_by_a_real_process(workspace, name):
    case = BY_FILE[name]
    before = logical(workspace)
    result = run_subprocess(["--workspace", str(workspace),
                             *command(case, CORPUS / case.file)])
    assert_refused(*result, case.expect, as_json=False)
    assert logical(workspace) == before


# -- made at test time -------------------------------------------------------------

def _fifty_megabytes() -> str:
    return "a" * (50 << 20)


@pytest.mark.slow
def test_fifty_megabyte_jsonl_line(workspace, tmp_path):
    path = tmp_path / "pairs_50mb_line.jsonl"
    path.write_text('{"prompt": "p", "chosen": "' + _fifty_megabytes() + '", "rejected": "r"}\n')
    before = logical(workspace)
    result = run_subprocess(["--workspace", str(workspace), "import", "pairs", str(path),
                             "--name", "hostile"])
    assert_refused(*result, r"line 1.*longer than the 16 MiB limit", as_json=False)
    assert logical(workspace) == before


@pytest.mark.slow
def test_fifty_megabyte_csv_field(workspace, tmp_path, capfd):
    path = tmp_path / "labels_50mb_line.csv"
    path.write_text("prompt,response,label\nq," + _fifty_megabytes() + ",safe\n")
    refuse_in_process(workspace, ["import", "labels", str(path), "--name", "hostile"],
                      r"line 2.*longer than the 16 MiB limit", capfd)


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(  # the old reader would encode 50 MB: not run
    "oracle_50mb_line.txt")])
def test_fifty_megabyte_oracle_query(workspace, tmp_path, capfd, name):
    path = tmp_path / name
    path.write_text("hello\n" + _fifty_megabytes() + "\n")
    refuse_in_process(workspace, ["oracle", "--model", "text@1", str(path)],
                      r"line 2.*longer than 16 MiB", capfd)


@pytest.fixture(scope="module")
def exported(template, tmp_path_factory) -> tuple[Path, Path, Path]:
    """The workspace's real signed release of obs@1, as a folder and a zip."""
    folder = tmp_path_factory.mktemp("release")
    with Workspace.open(template, read_only=True) as ws:
        as_folder = releases.export_release(ws, "obs", folder / "obs-1")
        as_zip = releases.export_release(ws, "obs", folder / "obs-1.zip")
    trusted = template.parent / "trusted.pub"
    assert releases.verify_release(as_folder, trusted).ok
    assert releases.verify_release(as_zip, trusted).ok
    return as_folder, as_zip, template.parent / "trusted.pub"


def _copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for item in src.iterdir():
        (dst / item.name).write_bytes(item.read_bytes())
    return dst


def _altered_signature(src: Path, dst: Path) -> Path:
    folder = _copy_folder(src, dst)
    doc = json.loads((folder / "signature.json").read_text())
    text = doc["signature"]
    doc["signature"] = text[:10] + ("0" if text[10] != "0" else "1") + text[11:]
    (folder / "signature.json").write_bytes(releases.json_file(doc))
    return folder


def _altered_manifest(src: Path, dst: Path) -> Path:
    folder = _copy_folder(src, dst)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["notes"] = "approved by nobody"
    (folder / "manifest.json").write_bytes(releases.json_file(manifest))
    return folder


def _altered_model_zip(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    model = bytearray(members["model.onnx"])
    model[len(model) // 2] ^= 0x01
    members["model.onnx"] = bytes(model)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dst


def _resigned(src: Path, dst: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = _copy_folder(src, dst)
    doc = json.loads((folder / "signature.json").read_text())
    attacker = Ed25519PrivateKey.generate()
    doc["public_key_pem"] = releases.public_pem_of(attacker.public_key())
    doc["key_id"] = doc["statement"]["key_id"] = releases.key_id_of(attacker.public_key())
    doc["signature"] = attacker.sign(releases.canonical_json(doc["statement"]).encode()).hex()
    (folder / "signature.json").write_bytes(releases.json_file(doc))
    return folder


ALTERED = {
    "release-altered-signature": (_altered_signature, False, "signature does not match"),
    "release-altered-manifest": (_altered_manifest, False, "manifest.json was changed"),
    "release-altered-model.zip": (_altered_model_zip, True, "model.onnx was changed"),
    "release-resigned": (_resigned, False, "made none of the approvals"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ALTERED))
def test_altered_release_is_refused(workspace, exported, tmp_path, capfd, name):
    alter, from_zip, expect = ALTERED[name]
    folder, as_zip, trusted = exported
    path = alter(as_zip if from_zip else folder, tmp_path / name)
    args = ["verify-release", str(path), "--trust", str(trusted)]
    refuse_in_process(workspace, args, expect, capfd)


# -- the content hash ------------------------------------------------------------

def test_content_hash_sees_every_logical_change_and_ignores_the_cache(workspace, tmp_path):
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(workspace.read_bytes())
    original = logical(workspace)
    assert logical(copy) == original  # the same rows hash alike
    with Workspace.open(copy) as ws:
        ws.execute("DELETE FROM embeddings")
        assert content_hash(ws) == original  # a cache is not logical content
        example = ws.execute("SELECT min(id) FROM examples").fetchall()[0][0]
        review.apply(ws, [review.Edit(example, "note", "changed", "test")])
        edited = content_hash(ws)
        assert edited != original
        ws.execute("UPDATE review_log SET reason = 'forged' WHERE seq = 1")
        assert content_hash(ws) not in (original, edited)


def test_content_hash_command(workspace, capfd):
    code, out, err, _ = run_in_process(["--workspace", str(workspace), "content-hash",
                                        "--json"], capfd)
    assert code == 0, err
    assert json.loads(out)["content_hash"] == logical(workspace)
