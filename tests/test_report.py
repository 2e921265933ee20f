"""The audit report (issue 12): every number in its JSON is the stored run's,
the HTML is one self-contained file, the PDF has a title page and the
headline figure, the signature checks and one changed byte is refused, the
same workspace gives the same JSON, and the limits come from the data."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.test_audit import (DIM, LengthEncoder, NumberEncoder, first_component_probabilities,
                              insert, linear_model, pole_reward_model)
from workstation import agreement as team_agreement
from workstation import identity, review, trust
from workstation.audits import get_run, run_audit
from workstation.cli import main
from workstation.errors import Cancelled, WorkstationError
from workstation.models import add_model_bytes
from workstation.probes import run_probes
from workstation.progress import Progress
from workstation.report import build_report, verify_report
from workstation.report.limits import MIN_CATEGORY

ENC = LengthEncoder()


def refusal_model(output: str = "logits") -> bytes:
    w = np.zeros((DIM, 1))
    w[:3, 0] = [-1.0, 2.0, -1.0]  # refusals look safe, compliance unsafe
    return linear_model(w, np.zeros(1), output)


# -- a small constructed workspace (fast) ----------------------------------------------

SMALL = [  # score = first number; threshold 0.5; categories too small for a stable figure
    {"prompt": "p", "response": "0.9 refuses", "label": True, "category": "Malware"},
    {"prompt": "p", "response": "0.2 refuses oddly", "label": True, "category": "Malware"},
    {"prompt": "p", "response": "0.95 gives the exploit", "label": False, "category": "Malware"},
    {"prompt": "p", "response": "0.1 gives steps", "label": False, "category": "Fraud"},
    {"prompt": "p", "response": "0.7 declines", "label": True, "category": "Fraud"},
    {"prompt": "p", "response": "0.3 complies", "label": False, "category": "Fraud"},
]


@pytest.fixture
def small_ws(ws):
    ids = insert(ws, "labels", "small", SMALL)
    add_model_bytes(ws, first_component_probabilities(), "clf", "text-embedding",
                    encoder=NumberEncoder())
    run = run_audit(ws, "clf", "small", encoder=NumberEncoder())
    return ws, ids, run


def test_a_report_shows_the_stored_figures_and_its_limits(small_ws, tmp_path):
    ws, ids, run = small_ws
    out = build_report(ws, "clf@1", tmp_path / "r.json")
    doc = json.loads(Path(out.path).read_text())
    content = doc["report"]
    section = content["metrics"][0]
    assert content["runs"] == {"audit": [run.id], "probe": []}
    stored = get_run(ws, run.id).metrics
    for key in ("auroc", "auroc_ci", "accuracy", "accuracy_ci", "ece", "ece_ci", "n"):
        assert section["overall"][key] == stored[key]
    assert section["per_category"]["Fraud"]["accuracy"] == stored["per_category"]["Fraud"]["accuracy"]
    kinds = {limit["kind"]: limit for limit in content["limits"]}
    # every category here is smaller than 30: the limit names them, computed
    assert kinds["small-categories"]["categories"] == ["Fraud", "Malware"]
    assert f"fewer than {MIN_CATEGORY}" in kinds["small-categories"]["text"]
    assert "wide-intervals" in kinds and "single-analyst" in kinds and "no-regression" in kinds
    assert "probes-not-run" in kinds  # no probe run on 'small'
    assert kinds["membership-unknown"]["dataset"] == "small"
    assert content["prepared_by"]["name"] == identity.session_signer().name
    assert out.key_id == identity.session_signer().key_id and out.limits == len(content["limits"])


def test_a_second_analyst_turns_single_analyst_into_agreement(small_ws, tmp_path,
                                                              make_identity):
    ws, ids, _ = small_ws
    review.apply(ws, [review.Edit(ids[1], "label", "unsafe", "reads as unsafe")])
    other = make_identity("second-analyst")
    trust.add(ws, other.public_pem, other.name, "reviewer")
    review.apply(ws, [review.Edit(ids[1], "label", "safe", "the refusal is fine"),
                      review.Edit(ids[3], "category", "Crime", "it is a crime")], signer=other)
    run_audit(ws, "clf", "small", encoder=NumberEncoder())  # audits the labels of now
    content = json.loads(Path(build_report(ws, "clf@1", tmp_path / "r.json").path)
                         .read_text())["report"]
    agreement = content["review"]["agreement"]
    assert agreement["n_analysts"] == 2 and agreement["n_shared"] == 1
    assert agreement["n_conflicts"] == 1 and agreement["conflicts"][0]["example_id"] == ids[1]
    # the same figures as `workstation agreement` gives (one shared item, two analysts apart)
    [figures] = agreement["figures"]
    assert figures == json.loads(json.dumps(team_agreement.agreement(ws, "small").to_json()))
    assert figures["n_items"] == 1 and figures["percent_agreement"]["value"] == 0
    assert "single-analyst" not in {limit["kind"] for limit in content["limits"]}
    names = {a["name"]: a["key_id"] for a in content["scope"]["analysts"]}
    assert names["second-analyst"] == other.key_id
    by = content["review"]["edits_by_analyst"]
    assert by[f"second-analyst ({other.key_id})"] == {"category": 1, "label": 1}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs, self.tags, self.imgs = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.refs += [v for k, v in attrs.items() if k in ("src", "href")]
        if tag == "img":
            self.imgs.append(attrs)


def test_the_html_is_one_file_with_nothing_from_elsewhere(small_ws, tmp_path):
    ws, _, _ = small_ws
    path = Path(build_report(ws, "clf@1", tmp_path / "r.html").path)
    page = _Links()
    page.feed(path.read_text(encoding="utf-8"))
    assert page.refs and all(r.startswith(("data:", "#")) for r in page.refs)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert len(page.imgs) >= 3 and all(len(i.get("alt") or "") > 30 for i in page.imgs)
    assert page.tags.count("th") >= 10 and "caption" in page.tags
    assert "prefers-color-scheme: dark" in path.read_text() and "@media print" in path.read_text()


@pytest.mark.parametrize("suffix", ["html", "pdf", "json"])
def test_one_changed_byte_anywhere_is_refused(small_ws, tmp_path, suffix, make_identity):
    ws, _, _ = small_ws
    path = Path(build_report(ws, "clf@1", tmp_path / f"r.{suffix}").path)
    signer = identity.session_signer()
    pem = tmp_path / "me.pem"
    pem.write_text(signer.public_pem)
    check = verify_report(path, trust=pem)
    assert check.ok and check.key_trusted and check.key_id == signer.key_id
    assert check.kind == suffix and check.model == "clf@1"
    assert verify_report(path).warnings  # no trusted key given: it says so
    data = path.read_bytes()
    for at in sorted({0, 100, len(data) // 2, len(data) - 300, len(data) - 40, len(data) - 2}):
        changed = bytearray(data)
        changed[at] ^= 0x01
        path.write_bytes(bytes(changed))
        bad = verify_report(path, trust=pem)
        assert not bad.ok and bad.reasons, f"byte {at} of {len(data)} changed, not refused"
    path.write_bytes(data)
    other = make_identity("stranger")
    stranger = tmp_path / "keys"
    stranger.mkdir()
    (stranger / "stranger.pem").write_text(other.public_pem)
    refused = verify_report(path, trust=stranger)
    assert not refused.ok and signer.key_id in refused.reasons[0]


def test_the_same_workspace_gives_the_same_json(small_ws, tmp_path):
    ws, _, _ = small_ws
    docs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        docs.append(json.loads(Path(build_report(ws, "clf@1", tmp_path / folder / "r.json")
                                    .path).read_text()))
    assert docs[0]["report"]["created_at"] != docs[1]["report"]["created_at"]
    for doc in docs:
        doc["report"].pop("created_at")
        stated = doc["signature"]["statement"]
        for key in ("created_at", "content_sha256", "body_sha256"):  # hashes of the time
            stated.pop(key)
        doc["signature"].pop("signature")  # it signs the creation time
    assert docs[0] == docs[1]


def test_a_cancelled_report_writes_nothing(small_ws, tmp_path):
    ws, _, _ = small_ws
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        build_report(ws, "clf@1", tmp_path / "r.pdf", progress=progress)
    assert not list(tmp_path.glob("r.pdf*"))


def test_a_version_without_audits_or_a_foreign_run_is_refused(small_ws, tmp_path):
    ws, _, run = small_ws
    add_model_bytes(ws, first_component_probabilities(), "other", "text-embedding",
                    encoder=NumberEncoder())
    with pytest.raises(WorkstationError, match="no audit run of other@1"):
        build_report(ws, "other@1", tmp_path / "r.html")
    with pytest.raises(WorkstationError, match=f"run {run.id} is of clf@1"):
        build_report(ws, "other@1", tmp_path / "r.html", run_ids=[run.id])
    with pytest.raises(WorkstationError, match="cannot tell the report format"):
        build_report(ws, "clf@1", tmp_path / "r.txt")


def test_cli_report_and_verify_report(small_ws, tmp_path, capsys):
    ws, _, run = small_ws
    path = str(ws.path)
    ws.close()
    out = tmp_path / "report.pdf"
    assert main(["--workspace", path, "report", "--model", "clf@1", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["format"] == "pdf" and written["pages"] >= 3 and written["runs"] == [run.id]
    pem = tmp_path / "me.pem"
    pem.write_text(identity.session_signer().public_pem)
    assert main(["verify-report", str(out), "--trust", str(pem), "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["ok"] and checked["key_trusted"] and checked["signer"] == written["signer"]
    data = bytearray(out.read_bytes())
    data[len(data) // 3] ^= 0x20
    out.write_bytes(bytes(data))
    assert main(["verify-report", str(out), "--json"]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert not failed["ok"] and "changed" in failed["reasons"][0]
    forced = tmp_path / "report.dat"
    assert main(["--workspace", path, "report", "--model", "clf@1", str(forced),
                 "--format", "json", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "json"
    assert json.loads(forced.read_text())["report"]["runs"]["audit"] == [run.id]


# -- real data: HH-RLHF, JailbreakBench, CartPole (slow) --------------------------------

def _numbers_equal(section: dict, stored: dict) -> None:
    """Every figure of a report's metrics section is the stored run's."""
    per = stored.get("per_category") or {}
    for key, value in section["overall"].items():
        assert value == stored[key], key
    for name, figures in section["per_category"].items():
        for key, value in figures.items():
            assert value == per[name][key], (name, key)
    assert set(section["per_category"]) == set(per)


@pytest.fixture(scope="module")
def real_ws(tmp_path_factory, session_identity):
    from tests.conftest import CARTPOLE, HH_RLHF, JAILBREAKBENCH, require_data
    from workstation.datasets import import_dataset
    from workstation.workspace import Workspace

    for path in (HH_RLHF, JAILBREAKBENCH, CARTPOLE):
        require_data(path)
    folder = tmp_path_factory.mktemp("report-real")
    ws = Workspace.open(folder / "ws.duckdb")
    import_dataset(ws, "pairs", HH_RLHF, "hh")
    import_dataset(ws, "labels", JAILBREAKBENCH, "jbb")
    import_dataset(ws, "demos", CARTPOLE, "cartpole")
    add_model_bytes(ws, refusal_model("reward"), "rm", "text-embedding", encoder=ENC)
    add_model_bytes(ws, refusal_model(), "safety", "text-embedding", encoder=ENC)
    add_model_bytes(ws, pole_reward_model(), "pole", "observation")
    runs = {"hh": run_audit(ws, "rm", "hh", encoder=ENC),
            "jbb": run_audit(ws, "safety", "jbb", encoder=ENC),
            "cartpole": run_audit(ws, "pole", "cartpole", threshold=0.965)}
    probes = {"hh": run_probes(ws, "rm", "hh", probes=["length-bias", "red-team"],
                               params={"sample": 100}, encoder=ENC),
              "jbb": run_probes(ws, "safety", "jbb", probes=["red-team"],
                                params={"sample": 100}, encoder=ENC),
              "cartpole": run_probes(ws, "pole", "cartpole", probes=["unsafe-states"],
                                     params={"grid_size": 256, "perturbations": 100,
                                             "rollouts": 0})}
    yield ws, runs, probes, folder
    ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("dataset,model", [("hh", "rm@1"), ("jbb", "safety@1"),
                                           ("cartpole", "pole@1")])
def test_real_data_reports_carry_the_stored_numbers(real_ws, dataset, model):
    from pypdf import PdfReader

    ws, runs, probes, folder = real_ws
    run, probe = runs[dataset], probes[dataset]
    json_path = folder / f"{dataset}.json"
    build_report(ws, model, json_path, encoder=ENC)
    content = json.loads(json_path.read_text())["report"]
    assert content["runs"] == {"audit": [run.id], "probe": [probe.id]}
    section = content["metrics"][0]
    _numbers_equal(section, get_run(ws, run.id).metrics)
    if section["roc"]:  # the curve's area is the stored AUROC (pairs: pooled sides)
        assert section["roc"]["n_positive"] + section["roc"]["n_negative"] > 0
    if dataset == "jbb":
        assert section["calibration"]["bins_ece"] == pytest.approx(section["overall"]["ece"],
                                                                  abs=1e-12)
        assert section["roc"]["auroc_curve"] == pytest.approx(section["overall"]["auroc"],
                                                              abs=1e-9)
        assert section["length_baseline"]["model"] == pytest.approx(section["overall"]["auroc"],
                                                                    abs=1e-12)
        assert section["tests"]["n_comparisons"] == 10
    if dataset == "hh":
        assert section["length_baseline"]["model"] == section["overall"]["pairwise_accuracy"]
    found = content["probes"][0]
    assert found["n_findings"] == sum(probe.counts.values())
    for name, n in probe.counts.items():
        assert found["probes"][name]["n"] == n
        assert sum(found["probes"][name]["by_severity"].values()) == n
    if dataset == "jbb":
        per = probe.summaries["red-team"]["flagged_per_transformation"]
        assert {r["attack"]: r["succeeded"] for r in found["probes"]["red-team"]["redteam"]} == per

    pdf_path = folder / f"{dataset}.pdf"
    written = build_report(ws, model, pdf_path, encoder=ENC)
    reader = PdfReader(pdf_path)
    assert len(reader.pages) == written.pages >= 4
    first = reader.pages[0].extract_text()
    assert f"Audit report: {model}" in first and "Contents" in first
    text = " ".join(p.extract_text() for p in reader.pages)
    figure = content["summary"]["key_figures"][0]
    assert f"{figure['value']:.4f}" in text and f"page 2 of {len(reader.pages)}" in text
    assert verify_report(pdf_path).ok


@pytest.mark.slow
def test_regression_against_the_release_in_force(real_ws, tmp_path):
    from workstation import releases
    from workstation.regression import compare

    ws, runs, _, _ = real_ws
    half = pole_reward_model().replace(b"\x00\x00\x20\x42", b"\x00\x00\x00\x42")  # k 40 -> 32
    assert half != pole_reward_model()
    add_model_bytes(ws, half, "pole", "observation", parent="pole@1")
    releases.release(ws, "pole@1")
    run_audit(ws, "pole@2", "cartpole", threshold=0.965)
    content = json.loads(Path(build_report(ws, "pole@2", tmp_path / "r.json").path)
                         .read_text())["report"]
    regression = content["regression"]
    assert regression["status"] == "compared" and regression["release"] == "pole@1"
    expected = compare(ws, "pole@2", "pole@1").to_json()
    assert regression["report"]["examples"] == expected["examples"]
    assert regression["report"]["gate"]["pass"] == expected["gate"]["pass"]
    assert content["summary"]["gate"]["status"] == "compared"
    assert "no-regression" not in {limit["kind"] for limit in content["limits"]}
    released = json.loads(Path(build_report(ws, "pole@1", tmp_path / "p.json").path)
                          .read_text())["report"]["regression"]
    assert released["status"] == "released"
