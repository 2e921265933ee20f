"""Small models for the head-retraining tests, made offline in the test run.

* ``token_reward_model``: a BERT-like tokens reward model in the Hugging Face
  sequence-classification layout (``input_ids``, ``attention_mask``,
  ``token_type_ids`` -> ``logits`` [N, 1]): embeddings, masked mean pooling,
  a tanh "pooler" layer, and a linear classifier head; exported with the
  TorchScript exporter (head = Gemm) or the dynamo exporter.
* ``word_tokenizer``: a WordLevel tokenizer.json over the words of some texts.
* models with no recognisable head: a non-linear op after the last MatMul,
  and a scikit-learn tree ensemble.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

SPECIALS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}


def word_tokenizer(texts: Iterable[str], path: Path, vocab_size: int = 2000,
                   max_length: int = 96) -> int:
    """Write a whitespace WordLevel tokenizer.json of the most common words;
    returns the vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    counts = Counter(w.lower() for t in texts for w in re.findall(r"\w+|[^\w\s]", t or ""))
    vocab = dict(SPECIALS)
    for word, _ in counts.most_common(vocab_size - len(SPECIALS)):
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    from tokenizers import normalizers

    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.enable_truncation(max_length)
    tokenizer.save(str(path))
    return len(vocab)


class _TokenReward(torch.nn.Module):
    def __init__(self, vocab: int, dim: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.words = torch.nn.Embedding(vocab, dim)
        self.types = torch.nn.Embedding(2, dim)
        self.pooler = torch.nn.Linear(dim, dim)
        self.classifier = torch.nn.Linear(dim, 1)

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.words(input_ids) + self.types(token_type_ids)
        mask = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.classifier(torch.tanh(self.pooler(pooled)))


def token_reward_model(vocab: int, dim: int = 32, seed: int = 0, dynamo: bool = False) -> bytes:
    """The tokens reward model's ONNX bytes (see the module docstring)."""
    module = _TokenReward(vocab, dim, seed).eval()
    example = tuple(torch.ones(2, 5, dtype=torch.int64) for _ in range(3))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            program = torch.onnx.export(module, example, input_names=names,
                                        output_names=["logits"], dynamo=True,
                                        dynamic_shapes=[{0: batch, 1: seq}] * 3, verbose=False)
            return program.model_proto.SerializeToString()
        axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
        torch.onnx.export(module, example, buffer, dynamo=False, opset_version=17,
                          input_names=names, output_names=["logits"], dynamic_axes=axes)
    return buffer.getvalue()


def nonlinear_after_matmul(width: int, seed: int = 0) -> bytes:
    """score = relu(x @ w + b): the last op after the MatMul is not a transform."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((width, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]),
         helper.make_node("Add", ["z", "b"], ["zb"]),
         helper.make_node("Relu", ["zb"], ["score"], name="final_relu")], "relu_head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(1, np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]) \
        .SerializeToString()


def tree_model(x: np.ndarray, y: np.ndarray) -> bytes:
    """A gradient-boosted tree regressor over embeddings (a TreeEnsemble node)."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=5, max_depth=2, random_state=0).fit(x, y)
    return to_onnx(model, x[:1].astype(np.float32), target_opset=17).SerializeToString()
