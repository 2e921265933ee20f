"""Team review from the terminal: label on two laptops as two identities,
`review export` / `review merge` both ways, `conflicts`, `adjudicate` by key,
`agreement`, `assign`; a refused bundle is one line and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.test_team_review import ANN, BOB, _ids, laptops  # noqa: F401 (fixture)
from workstation.cli import main
from workstation.verify import content_hash
from workstation.workspace import Workspace

pytestmark = pytest.mark.slow


def cli(capsys, path, who, *args, ok=True) -> dict:
    code = main(["--workspace", str(path), "--identity", who, *args, "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert (code == 0) == ok, captured.err
    if not ok:
        assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    return result


def test_two_laptops_from_the_terminal(laptops, capsys):  # noqa: F811
    a, b, tmp = laptops["a"], laptops["b"], laptops["tmp"]
    with Workspace.open(a, read_only=True) as ws:
        ids, pairs = _ids(ws), _ids(ws, "prefs")
    for path, who, labels in ((a, "ann", ANN), (b, "bob", BOB)):
        for i in sorted(labels)[:16]:
            cli(capsys, path, who, "label", str(ids[i]), "--set-label", labels[i],
                "--reason", "second look")
    cli(capsys, a, "ann", "label", str(pairs[0]), "--flip", "--reason", "rejected is safer")
    cli(capsys, b, "bob", "label", str(pairs[0]), "--no-flip", "--reason", "chosen is fine")
    for path, who in ((a, "ann"), (b, "bob")):
        for dataset in ("chat", "prefs"):
            exported = cli(capsys, path, who, "review", "export", "--dataset", dataset,
                           str(tmp / f"{who}-{dataset}.bundle"))
            assert exported["analysts"] == [who] and len(exported["content_hash"]) == 64
            assert {"seq", "hash"} <= set(exported["log_head"])
    merged = cli(capsys, a, "ann", "review", "merge", str(tmp / "bob-chat.bundle"),
                 str(tmp / "bob-prefs.bundle"))
    assert merged["added"] == 17 and [m["added"] for m in merged["bundles"]] == [16, 1]
    cli(capsys, b, "bob", "review", "merge", str(tmp / "ann-chat.bundle"),
        str(tmp / "ann-prefs.bundle"))

    overlap = [i for i in sorted(ANN)[:16] if i in sorted(BOB)[:16] and ANN[i] != BOB[i]]
    found = cli(capsys, a, "ann", "conflicts", "--dataset", "chat")["conflicts"]
    assert [c["example_id"] for c in found] == [ids[i] for i in overlap]
    assert all({"example_id", "field", "values", "value_in_force"} <= set(c) for c in found)
    [flip] = cli(capsys, b, "bob", "conflicts", "--dataset", "prefs")["conflicts"]
    assert {v["analyst"]: v["value"] for v in flip["values"]} == {"ann": True, "bob": False}

    carl = laptops["carl"].key_id
    refused = cli(capsys, a, "ann", "adjudicate", str(pairs[0]), "--flip", "--reason", "r",
                  ok=False)
    assert "part of this disagreement" in refused["error"]
    settled = cli(capsys, a, "carl", "adjudicate", str(pairs[0]), "--choose",
                  laptops["ann"].key_id, "--reason", "the rejected reply is safer")
    assert settled["change"]["new"] is True and settled["change"]["key_id"] == carl
    assert cli(capsys, a, "ann", "conflicts", "--dataset", "prefs")["conflicts"] == []

    report = cli(capsys, a, "ann", "agreement", "--dataset", "chat", "--boot", "100")
    assert report["n_items"] == len([i for i in sorted(ANN)[:16] if i in sorted(BOB)[:16]])
    assert report["n_analysts"] == 2 and len(report["cohen_kappa"]) == 1
    assert {"value", "ci95"} <= set(report["krippendorff_alpha"])
    prefs = cli(capsys, a, "ann", "agreement", "--dataset", "prefs", "--boot", "50")
    assert prefs["field"] == "flipped" and prefs["n_items"] == 1  # a pairs dataset's judgement
    assert prefs["percent_agreement"]["value"] == 0.0  # the adjudication keeps both judgements

    assigned = cli(capsys, a, "ann", "assign", "--examples", f"{ids[0]},{ids[1]}", "--to", "bob")
    assert assigned["assignee"] == laptops["bob"].key_id and len(assigned["changes"]) == 2

    # one changed byte: refused in one line, nothing changed
    data = bytearray((tmp / "ann-chat.bundle").read_bytes())
    data[len(data) // 3] ^= 0x01
    (tmp / "bad.bundle").write_bytes(bytes(data))
    with Workspace.open(b, read_only=True) as ws:
        before = content_hash(ws)
    cli(capsys, b, "bob", "review", "merge", str(tmp / "bad.bundle"), ok=False)
    with Workspace.open(b, read_only=True) as ws:
        assert content_hash(ws) == before
    assert cli(capsys, b, "bob", "verify")["ok"] is True
