"""Real transformer reward models (tests/hf_models.py) from the terminal, how
text reaches a tokens model (``--text-format``, ``--max-length``, truncation
counts) and the tokens path's batching and deduplication."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from tests.cli_support import run
from tests.test_models import insert_dataset, token_model, token_sum, write_tokenizer
from workstation.cli import main
from workstation.errors import WorkstationError
from workstation.models import token_batches as tb
from workstation.models.registry import add_model, load_runner
from workstation.models.scoring import score_dataset, score_texts
from workstation.models.text_format import TextFormat, chat_format_from_config

# Real chat templates, as their models' tokenizer_config.json ship them.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MISTRAL_TEMPLATE = (  # Mistral-7B-Instruct-v0.1: bos/eos tokens and raise_exception
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and "
    "assistant roles are supported!') }}{% endif %}{% endfor %}")
LLAMA3_TEMPLATE = (  # Meta-Llama-3-8B-Instruct: set, trim, loop.index0, bos_token
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
    "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
SYSTEM_ONLY_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message must come "
    "first') }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")
CONVERSATIONS = [("What is 2+2?", "4."), ("", "An answer with no question."),
                 ("  Spaces around  \n", "Line one\nline two\n\n"),
                 ("Ünïcödé — “quotes”", "<b>html</b> & {{ braces }}")]


def hf_tokenizer(template: str, **special: str):
    """A transformers tokenizer carrying ``template`` (a tiny word-level vocab:
    only apply_chat_template's text matters here)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=template, **special)


# -- text formats -----------------------------------------------------------------------

@pytest.mark.parametrize("template,special", [
    (QWEN2_TEMPLATE, {"eos_token": "<|im_end|>"}),
    (MISTRAL_TEMPLATE, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    (LLAMA3_TEMPLATE, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})],
    ids=["qwen2", "mistral", "llama3"])
def test_chat_template_renders_as_transformers_apply_chat_template(template, special):
    fmt = chat_format_from_config(json.dumps({"chat_template": template, **special}))
    tokenizer = hf_tokenizer(template, **special)
    for prompt, response in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
            tokenize=False, add_generation_prompt=False)
        assert fmt.items([prompt], [response]) == [expected]


def test_text_formats_give_the_inputs_they_should():
    prompts, responses = ["Is it safe?", None], ["Yes.", "No prompt here."]
    assert TextFormat("pair").items(prompts, responses) == [("Is it safe?", "Yes."),
                                                            "No prompt here."]
    assert TextFormat("response").items(prompts, responses) == ["Yes.", "No prompt here."]
    chat = TextFormat("chat-template", "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
                      "{% endfor %}")
    assert chat.items(prompts, responses) == ["<user>Is it safe?<assistant>Yes.",
                                              "<user><assistant>No prompt here."]


@pytest.mark.parametrize("config,message", [
    ({"eos_token": "</s>"}, "has no chat_template"),
    ({"chat_template": SYSTEM_ONLY_TEMPLATE}, "a system message must come first"),
    ({"chat_template": "{% for m in messages %}{{ m.content }}"}, "cannot render"),
    ({"chat_template": "{{ messages[0]['content'] }}"}, "drops the assistant's response")])
def test_an_unusable_chat_template_is_refused_in_one_line(ws, tmp_path, capsys, config,
                                                          message):
    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    run(capsys, *w, "model", "add", str(tmp_path / "model.onnx"), "--name", "tok",
        "--input", "text-tokens", "--text-format", "chat-template", ok=False)
    # the one line says why
    main([*w, "model", "add", str(tmp_path / "model.onnx"), "--name", "tok", "--input",
          "text-tokens", "--text-format", "chat-template"])
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert run(capsys, *w, "model", "list")["models"] == []


def test_text_format_and_max_length_are_stored_and_listed(tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    w = ["--workspace", str(tmp_path / "w.duckdb")]
    added = run(capsys, *w, "model", "add", str(tmp_path / "model.onnx"), "--name", "tok",
                "--input", "text-tokens", "--text-format", "response", "--max-length", "7")
    assert added["manifest"]["input"]["text_format"] == "response"
    assert added["manifest"]["input"]["max_length"] == 7
    run(capsys, *w, "model", "add", str(tmp_path / "model.onnx"), "--name", "tok",
        "--input", "text-tokens")
    listed = run(capsys, *w, "model", "list")["models"]
    assert [(m["text_format"], m["max_length"]) for m in listed] == [("response", 7),
                                                                     ("pair", 512)]
    main([*w, "model", "list"])
    text = capsys.readouterr().out
    assert "(response, max 7 tokens)" in text and "(pair, max 512 tokens)" in text
    run(capsys, *w, "model", "add", str(tmp_path / "model.onnx"), "--name", "x",
        "--input", "text-tokens", "--max-length", "0", ok=False)


def test_response_format_ignores_the_prompt(ws, tmp_path):
    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    pair = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens")
    alone = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens", text_format="response")
    prompts, responses = ["very very good", "bad", None], ["ok", "good ok", "very"]
    assert score_texts(ws, alone, prompts, responses).tolist() == \
        [token_sum(r) for r in responses]
    assert score_texts(ws, pair, prompts, responses).tolist() == \
        [token_sum(p, r) for p, r in zip(prompts, responses)]


def test_truncated_texts_are_counted_in_the_audit_metrics(ws, tmp_path):
    from workstation.audits import run_audit

    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    version = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens", max_length=3,
                        text_format="response")
    pairs = [{"prompt": "p", "chosen": "good good good good", "rejected": "bad"},   # 1 side
             {"prompt": "p", "chosen": "ok", "rejected": "bad"},                     # none
             {"prompt": "p", "chosen": "ok ok ok ok ok", "rejected": "bad bad bad bad"},  # 2
             {"prompt": "p", "chosen": "ok ok ok", "rejected": "very"}]              # none
    insert_dataset(ws, "pairs", pairs, name="pp")
    run_ = run_audit(ws, version, "pp")
    assert run_.metrics["truncated"] == 2 and run_.metrics["truncated_sides"] == 3
    result = score_dataset(ws, version, "pp")
    assert result.score_chosen.tolist() == [token_sum(p["chosen"], limit=3) for p in pairs]
    labels = [{"response": "good " * n, "label": True} for n in (1, 3, 4, 9)]
    insert_dataset(ws, "labels", labels, name="ll")
    assert run_audit(ws, version, "ll").metrics["truncated"] == 2


# -- batching ---------------------------------------------------------------------------

def test_token_batches_stay_within_the_budget_and_cover_every_row():
    lengths = np.random.default_rng(0).integers(1, 600, 3000)
    seen = []
    for rows in tb.token_batches(lengths, budget=4096, max_rows=128):
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 4096
        assert len(rows) <= 128
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(3000))


def test_identical_inputs_are_scored_once_and_come_back_in_input_order(ws, tmp_path):
    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    version = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens")
    runner = load_runner(ws, version)
    fed, original = [], runner._run

    def counting(feeds, n, progress=None):
        fed.append(n)
        return original(feeds, n, progress)
    runner._run = counting
    try:
        prompts = ["good", "good", None, "bad", "good"] * 40
        responses = ["ok", "ok", "very good", "ok", "bad bad"] * 40
        scores = runner.score_tokens(prompts, responses)
    finally:
        runner._run = original
    assert sum(fed) == 4  # four distinct (prompt, response) inputs
    assert scores.tolist() == [token_sum(p, r) for p, r in zip(prompts, responses)]


def test_cancelling_stops_tokens_scoring_between_batches(ws, tmp_path):
    from workstation.errors import Cancelled
    from workstation.progress import Progress

    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    version = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens")
    runner = load_runner(ws, version)
    progress, batches, original = Progress(), [], runner._run

    def cancel_after_first(feeds, n, p=None):
        batches.append(n)
        progress.cancel()
        return original(feeds, n, None)
    runner._run = cancel_after_first
    try:
        with pytest.raises(Cancelled):
            # 600 distinct lengths: more than one batch of MAX_ROWS
            runner.score_tokens([None] * 600, ["ok " * (i % 300 + 1) + "good" * (i // 300)
                                               for i in range(600)], progress)
    finally:
        runner._run = original
    assert len(batches) == 1


# -- real models through the CLI (slow) ------------------------------------------------------

def subset_data(tmp_path, hh_rlhf_path, jailbreakbench_dir, n_pairs: int = 40):
    """The first ``n_pairs`` HH-RLHF records and one JailbreakBench file."""
    hh = tmp_path / "hh.jsonl.gz"
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as f, \
            gzip.open(hh, "wt", encoding="utf-8") as out:
        for _, line in zip(range(n_pairs), f):
            out.write(line)
    jbb = tmp_path / "jbb"
    jbb.mkdir()
    shutil.copyfile(jailbreakbench_dir / "GCG_gpt-3.5-turbo-1106.json", jbb / "GCG.json")
    return hh, jbb


def audit_scores(ws_path: str, run_id: int) -> dict[str, np.ndarray]:
    from workstation.workspace import Workspace

    with Workspace.open(ws_path, read_only=True) as ws:
        rows = ws.execute("SELECT score, margin, label FROM audit_results WHERE run_id = ? "
                          "ORDER BY example_id", [run_id]).fetchall()
    score, margin, label = (np.array(c, dtype=object) for c in zip(*rows))
    return {"score": score, "margin": margin, "label": label}


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["bert_cls_model", "bert_cls_dynamo_model",
                                     "bert_cls_int8_model", "decoder_model"])
def test_a_transformer_reward_model_through_the_cli(request, tmp_path, capsys, hh_rlhf_path,
                                                    jailbreakbench_dir, fixture):
    model = request.getfixturevalue(fixture)
    hh, jbb = subset_data(tmp_path, hh_rlhf_path, jailbreakbench_dir)
    ws_path = str(tmp_path / "w.duckdb")
    w = ["--workspace", ws_path]
    run(capsys, *w, "import", "pairs", str(hh), "--name", "hh")
    run(capsys, *w, "import", "labels", str(jbb), "--name", "jbb")
    v1 = run(capsys, *w, "model", "add", str(model.onnx), "--name", "rm", "--input",
             "text-tokens")
    assert v1["manifest"]["input"]["pooling"] == model.pooling
    assert v1["manifest"]["input"]["names"] == list(model.inputs)
    assert v1["text_format"] == "pair"
    extra = ["--text-format", "chat-template"] if model.name == "decoder" else \
        ["--text-format", "response", "--max-length", "64"]
    v2 = run(capsys, *w, "model", "add", str(model.onnx), "--name", "rm", "--input",
             "text-tokens", *extra)
    assert v2["version"] == 2 and v2["text_format"] == extra[1]

    auroc = {}
    for ref in ("rm@1", "rm@2"):
        labels = run(capsys, *w, "audit", "--model", ref, "--dataset", "jbb")
        got = audit_scores(ws_path, labels["run_id"])
        safe = got["label"].astype(bool)
        auroc[ref] = labels["metrics"]["auroc"]
        assert auroc[ref] == pytest.approx(roc_auc_score(safe, got["score"].astype(float)),
                                           abs=1e-12)
        assert "truncated" in labels["metrics"]
    pairs = run(capsys, *w, "audit", "--model", "rm@1", "--dataset", "hh")
    margins = audit_scores(ws_path, pairs["run_id"])["margin"].astype(float)
    assert pairs["metrics"]["pairwise_accuracy"] == pytest.approx(float(np.mean(margins > 0)),
                                                                  abs=1e-12)
    assert pairs["metrics"]["truncated_sides"] >= pairs["metrics"]["truncated"] > 0
    with capsys.disabled():  # the figures, not in the next command's captured output
        print(f"\n{model.name}: JailbreakBench GCG/gpt-3.5 AUROC pair {auroc['rm@1']:.3f}, "
              f"{extra[1]} {auroc['rm@2']:.3f}; HH pairwise accuracy "
              f"{pairs['metrics']['pairwise_accuracy']:.3f}")

    report = run(capsys, *w, "compare", "--candidate", "rm@2", "--baseline", "rm@1")
    assert report["examples"]["n"] > 0 and "pass" in report["gate"]
    release = run(capsys, *w, "release", "rm@1")
    assert release["release_id"] >= 1
    out = tmp_path / "release.zip"
    run(capsys, *w, "export-release", "rm", str(out))
    run(capsys, "identity", "export-public", str(tmp_path / "me.pem"))
    checked = run(capsys, "verify-release", str(out), "--trust", str(tmp_path / "me.pem"))
    assert checked["ok"] is True


def hf_forward(model, texts) -> np.ndarray:
    """Scores of ``texts`` (strings or (prompt, response) pairs) by a direct
    transformers forward of the same module, tokenized by transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model.hf_dir))
    net = AutoModelForSequenceClassification.from_pretrained(str(model.hf_dir)).eval()
    out = []
    for text in texts:
        args = text if isinstance(text, tuple) else (text,)
        batch = tokenizer(*args, truncation=True, max_length=128 if model.pooling == "cls"
                          else 256, return_tensors="pt", return_token_type_ids=None)
        batch = {k: v for k, v in batch.items() if k in model.inputs}
        with torch.no_grad():
            out.append(float(net(**batch).logits[0, 0]))
    return np.array(out)


SAMPLES = [("How do I make a cake?", "Mix flour, eggs and sugar, then bake it."),
           ("How do I hurt someone?", "I won't help with that."),
           (None, "A response without a prompt."),
           ("Tell me a long story.", "Once upon a time " * 80)]


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["bert_cls_model", "bert_cls_dynamo_model", "decoder_model"])
def test_scores_equal_a_transformers_forward_of_the_same_module(request, ws, fixture):
    model = request.getfixturevalue(fixture)
    pair = add_model(ws, model.onnx, "pair", "text-tokens")
    prompts, responses = [p for p, _ in SAMPLES], [r for _, r in SAMPLES]
    expected = hf_forward(model, [(p, r) if p else r for p, r in SAMPLES])
    np.testing.assert_allclose(score_texts(ws, pair, prompts, responses), expected, atol=1e-4)
    alone = add_model(ws, model.onnx, "alone", "text-tokens", text_format="response")
    other = ["A completely different prompt."] * len(SAMPLES)
    got = score_texts(ws, alone, other, responses)
    np.testing.assert_allclose(got, hf_forward(model, responses), atol=1e-4)
    np.testing.assert_array_equal(got, score_texts(ws, alone, prompts, responses))


@pytest.mark.slow
def test_chat_template_scores_equal_apply_chat_template_then_forward(ws, decoder_model):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    version = add_model(ws, decoder_model.onnx, "chat", "text-tokens",
                        text_format="chat-template")
    assert version.manifest["input"]["chat_template"].startswith("{% for message")
    tokenizer = AutoTokenizer.from_pretrained(str(decoder_model.hf_dir))
    net = AutoModelForSequenceClassification.from_pretrained(str(decoder_model.hf_dir)).eval()
    expected = []
    for prompt, response in SAMPLES:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt or ""},
             {"role": "assistant", "content": response}], tokenize=True, truncation=True,
            max_length=256, return_dict=True, return_tensors="pt")
        with torch.no_grad():
            expected.append(float(net(input_ids=ids["input_ids"],
                                      attention_mask=ids["attention_mask"]).logits[0, 0]))
    got = score_texts(ws, version, [p for p, _ in SAMPLES], [r for _, r in SAMPLES])
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_int8_scores_follow_the_fp32_model(ws, bert_cls_model, bert_cls_int8_model):
    fp32 = add_model(ws, bert_cls_model.onnx, "fp32", "text-tokens")
    int8 = add_model(ws, bert_cls_int8_model.onnx, "int8", "text-tokens")
    from tests.hf_models import jailbreakbench_examples

    prompts, responses, _ = jailbreakbench_examples(60)
    a, b = score_texts(ws, fp32, prompts, responses), score_texts(ws, int8, prompts, responses)
    assert spearmanr(a, b).statistic > 0.9


@pytest.mark.slow
def test_truncation_counts_match_the_tokenizer_for_a_real_model(ws, tmp_path, bert_cls_model,
                                                               jailbreakbench_dir):
    from tokenizers import Tokenizer

    from workstation.audits import run_audit
    from workstation.datasets import import_dataset

    jbb = tmp_path / "jbb"
    jbb.mkdir()
    shutil.copyfile(jailbreakbench_dir / "GCG_gpt-3.5-turbo-1106.json", jbb / "GCG.json")
    import_dataset(ws, "labels", jbb, name="jbb")
    version = add_model(ws, bert_cls_model.onnx, "short", "text-tokens", max_length=32)
    metrics = run_audit(ws, version, "jbb").metrics
    tokenizer = Tokenizer.from_file(str(bert_cls_model.tokenizer))
    tokenizer.no_truncation()
    rows = ws.execute("SELECT prompt, response FROM current_examples WHERE dataset_id = "
                      "(SELECT id FROM datasets WHERE name = 'jbb') AND NOT excluded "
                      "AND current_label IS NOT NULL").fetchall()
    longer = sum(len(tokenizer.encode(*((p, r) if p else (r,))).ids) > 32 for p, r in rows)
    assert 0 < metrics["truncated"] == longer <= len(rows)


def test_max_length_applies_to_tokens_models_only(ws, tmp_path):
    from tests.test_models import DIM, HashEncoder, reward_mlp

    (tmp_path / "m.onnx").write_bytes(reward_mlp(DIM))
    with pytest.raises(WorkstationError, match="text-tokens models only"):
        add_model(ws, tmp_path / "m.onnx", "mlp", "text-embedding", max_length=5,
                  encoder=HashEncoder())


def test_the_version_details_say_how_texts_reach_a_tokens_model(ws, tmp_path):
    from workstation.ui.versions import manifest_facts

    (tmp_path / "model.onnx").write_bytes(token_model())
    write_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": QWEN2_TEMPLATE, "eos_token": "<|im_end|>"}))
    alone = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens",
                      text_format="response", max_length=7)
    facts = dict(manifest_facts(alone.manifest))
    assert facts["text format"] == "the response alone (prompt ignored)"
    assert facts["max length"].startswith("7 tokens")
    chat = add_model(ws, tmp_path / "model.onnx", "tok", "text-tokens",
                     text_format="chat-template")
    sha = chat.manifest["input"]["chat_template_sha256"]
    assert chat.manifest["input"]["chat_template"] == QWEN2_TEMPLATE
    assert f"template sha256 {sha[:12]}" in dict(manifest_facts(chat.manifest))["text format"]
