"""The hostile-input corpus: bad files the CLI must refuse in one line.

Run ``python tests/hostile/make_corpus.py`` to (re)write the files under
``tests/hostile/corpus/`` and the manifest ``tests/hostile/CORPUS.md`` from
the ``CASES`` table below; ``tests/test_hostile_corpus.py`` feeds each file
to the command named here. Everything is small; inputs that must be big (a
50 MB line) or that need a real signed release are made at test time (see
``TEST_TIME_CASES``, listed in the manifest too).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
MANIFEST = HERE / "CORPUS.md"

# The commands, with {file} for the corpus file. The test workspace holds a
# 4-wide observation model obs@1 and a text-embedding model text@1.
IMPORT_PAIRS = ("import", "pairs", "{file}", "--name", "hostile")
IMPORT_HH = ("import", "pairs", "{file}", "--name", "hostile", "--format", "hh-rlhf")
IMPORT_LABELS = ("import", "labels", "{file}", "--name", "hostile")
IMPORT_JBB = ("import", "labels", "{file}", "--name", "hostile", "--format", "jailbreakbench")
IMPORT_DEMOS = ("import", "demos", "{file}", "--name", "hostile")
MODEL_OBS = ("model", "add", "{file}", "--name", "hostile", "--input", "observation")
MODEL_TEXT = ("model", "add", "{file}", "--name", "hostile", "--input", "text-embedding")
MODEL_TOKENS = ("model", "add", "{file}", "--name", "hostile", "--input", "text-tokens",
                "--tokenizer", "{dir}/token_tokenizer_ok.json")
TOKENIZER = ("model", "add", "{dir}/token_model_ok.onnx", "--name", "hostile", "--input",
             "text-tokens", "--tokenizer", "{file}")
VERIFY_RELEASE = ("verify-release", "{file}")
ORACLE_OBS = ("oracle", "--model", "obs@1", "{file}")
ORACLE_TEXT = ("oracle", "--model", "text@1", "{file}")


@dataclass(frozen=True)
class Case:
    """One bad file: what is wrong with it, the command it is fed to, and a
    regular expression the one-line error must match."""

    file: str
    wrong: str
    command: tuple[str, ...]
    expect: str
    make: Callable[[], bytes] | None = None  # None: a helper file, not a case


# -- builders ----------------------------------------------------------------

PAIR = {"prompt": "How do I bake bread?", "chosen": "Mix flour, water, yeast.",
        "rejected": "I will not help."}
LABEL = {"prompt": "How do I bake bread?", "response": "Mix flour and water.", "label": "safe"}


def lines(*records: object, tail: str = "") -> bytes:
    return ("".join(json.dumps(r) + "\n" for r in records) + tail).encode("utf-8")


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def half(data: bytes) -> bytes:
    return data[:len(data) // 2]


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def parquet(columns: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def csv_text(text: str) -> bytes:
    return text.encode("utf-8")


def npz(arrays: dict[str, np.ndarray], *, pickle: bool = False) -> bytes:
    """An .npz written with a fixed timestamp, so the corpus is reproducible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=pickle)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", (1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def npy_header_only(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """An .npy member that declares ``shape`` but holds 32 bytes of data."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": dtype, "fortran_order": False, "shape": shape})
    return member.getvalue() + b"\0" * 32


def rollouts(n_traj: int = 3, steps: int = 5) -> dict[str, np.ndarray]:
    obs = np.random.default_rng(0).standard_normal((n_traj * (steps + 1), 4)).astype(np.float32)
    return {"obs": obs, "acts": np.arange(n_traj * steps) % 2,
            "indices": np.arange(1, n_traj) * steps, "rews": np.ones(n_traj * steps)}


def npz_with(**changes: np.ndarray) -> bytes:
    arrays = rollouts()
    arrays.update(changes)
    return npz(arrays)


def npz_pickled() -> bytes:
    arrays = rollouts()
    arrays["obs"] = np.array([{"x": i} for i in range(len(arrays["obs"]))], dtype=object)
    return npz(arrays, pickle=True)


def npz_nan() -> bytes:
    obs = rollouts()["obs"]
    obs[8, 2] = np.nan
    return npz_with(obs=obs)


def npz_huge_declared() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("obs.npy", (1980, 1, 1, 0, 0, 0)),
                    npy_header_only((10**12, 4)))
        member = io.BytesIO()
        np.lib.format.write_array(member, np.zeros(5, np.int64))
        zf.writestr(zipfile.ZipInfo("acts.npy", (1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


# -- ONNX builders -------------------------------------------------------------

def onnx_model(nodes: list, inputs: list, outputs: list, initializers: tuple = (),
               opsets: tuple = (("", 17),)) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, ir_version=9, producer_name="hostile-corpus",
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    return model.SerializeToString()


def _io(name: str, dims: list, elem: int | None = None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, elem or TensorProto.FLOAT, dims)


def _weights(rows: int = 4):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ones((rows, 1), np.float32), "w")


def reward_model(width: int = 4, elem: int | None = None, dims: list | None = None) -> bytes:
    """score = x @ 1: a tiny valid-looking model whose input can be made wrong."""
    from onnx import helper

    return onnx_model([helper.make_node("MatMul", ["x", "w"], ["score"])],
                      [_io("x", dims or ["N", width], elem)], [_io("score", ["N", 1])],
                      [_weights(width)])


def onnx_wrong_dtype() -> bytes:
    from onnx import TensorProto, helper

    return onnx_model([helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
                       helper.make_node("MatMul", ["f", "w"], ["score"])],
                      [_io("x", ["N", 4], TensorProto.INT64)], [_io("score", ["N", 1])],
                      [_weights()])


def onnx_rank3() -> bytes:
    from onnx import helper

    return onnx_model([helper.make_node("MatMul", ["x", "w"], ["score"])],
                      [_io("x", ["N", 3, 4])], [_io("score", ["N", 3, 1])], [_weights()])


def onnx_custom_domain() -> bytes:
    from onnx import helper

    return onnx_model([helper.make_node("Exfiltrate", ["x"], ["score"], domain="com.evil")],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1])],
                      opsets=(("", 17), ("com.evil", 1)))


def onnx_unknown_op() -> bytes:
    from onnx import helper

    return onnx_model([helper.make_node("FrobnicateTensor", ["x"], ["score"])],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1])])


def _hollow(name: str, dims: list[int]):
    """A float tensor that declares ``dims`` and holds no data."""
    from onnx import TensorProto

    tensor = TensorProto()
    tensor.name, tensor.data_type = name, TensorProto.FLOAT
    tensor.dims.extend(dims)
    return tensor


def onnx_huge_initializer() -> bytes:
    from onnx import helper

    return onnx_model([helper.make_node("MatMul", ["x", "w"], ["score"])],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1_000_000_000])],
                      [_hollow("w", [4, 1_000_000_000])])


def onnx_huge_constant() -> bytes:
    from onnx import helper

    return onnx_model([helper.make_node("Constant", [], ["c"], value=_hollow("c", [10**6, 10**6])),
                       helper.make_node("MatMul", ["x", "w"], ["xw"]),
                       helper.make_node("Add", ["xw", "c"], ["score"])],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1])], [_weights()])


def onnx_constant_of_shape(side: int) -> bytes:
    """Fills a [side, side] tensor at run time: a memory bomb in 200 bytes."""
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([side, side], np.int64), "shape")
    one = numpy_helper.from_array(np.array([1.0], np.float32))
    return onnx_model([helper.make_node("ConstantOfShape", ["shape"], ["c"], value=one),
                       helper.make_node("MatMul", ["x", "w"], ["xw"]),
                       helper.make_node("Add", ["xw", "c"], ["score"])],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1])], [_weights(), shape])


def onnx_infinite_loop() -> bytes:
    """A Loop with 2**62 iterations whose condition never turns false."""
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v"], ["v_out"])], "body",
        [_io("i", [], TensorProto.INT64), _io("cond_in", [], TensorProto.BOOL), _io("v", ["N", 1])],
        [_io("cond_out", [], TensorProto.BOOL), _io("v_out", ["N", 1])])
    trips = numpy_helper.from_array(np.array(2**62, np.int64), "trips")
    keep_going = numpy_helper.from_array(np.array(True), "keep_going")
    return onnx_model([helper.make_node("MatMul", ["x", "w"], ["xw"]),
                       helper.make_node("Loop", ["trips", "keep_going", "xw"], ["score"],
                                        body=body)],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1])],
                      [_weights(), trips, keep_going])


def onnx_external_data() -> bytes:
    """Weights 'stored' in ../../../etc/passwd: must never be followed."""
    from onnx import TensorProto

    tensor = TensorProto()
    tensor.name, tensor.data_type = "w", TensorProto.FLOAT
    tensor.dims.extend([4, 1])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    from onnx import helper

    return onnx_model([helper.make_node("MatMul", ["x", "w"], ["score"])],
                      [_io("x", ["N", 4])], [_io("score", ["N", 1])], [tensor])


def onnx_string_output() -> bytes:
    from onnx import TensorProto, helper

    return onnx_model([helper.make_node("Cast", ["x"], ["score"], to=TensorProto.STRING)],
                      [_io("x", ["N", 1])], [_io("score", ["N", 1], TensorProto.STRING)])


def onnx_wrong_output_rank() -> bytes:
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([-1, 2, 2], np.int64), "shape")
    return onnx_model([helper.make_node("Reshape", ["x", "shape"], ["score"])],
                      [_io("x", ["N", 4])], [_io("score", ["N", 2, 2])], [shape])


def onnx_no_nodes() -> bytes:
    return onnx_model([], [_io("x", ["N", 4])], [_io("x", ["N", 4])])


def token_model_ok() -> bytes:
    """A valid text-tokens model (a helper for the tokenizer cases)."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [_io(n, ["N", "S"], TensorProto.INT64) for n in ("input_ids", "attention_mask")]
    nodes = [helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
             helper.make_node("Cast", ["masked"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
             helper.make_node("Neg", ["s"], ["neg"]),
             helper.make_node("Concat", ["neg", "s"], ["logits"], axis=1)]
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return onnx_model(nodes, inputs, [_io("logits", ["N", 2])], [axes])


def tokenizer_ok() -> bytes:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "good": 2},
                                           unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str().encode("utf-8")


# -- release builders -------------------------------------------------------------

def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


RELEASE_LOOKALIKE = {"model.onnx": b"onnx", "manifest.json": b"{}", "governance.json": b"{}",
                     "signature.json": b"{}"}


def zip_declaring_huge_size() -> bytes:
    """A zip whose central directory claims a 64 GiB member (zip64 extra field)."""
    data = zip_of({"model.onnx": b"x" * 64})
    cd = data.index(b"PK\x01\x02")
    # Point the sizes at the zip64 extra field and claim 64 GiB uncompressed.
    head = bytearray(data[:cd])
    central = bytearray(data[cd:])
    name_len, extra_len = struct.unpack("<HH", central[28:32])
    extra = struct.pack("<HHQ", 0x0001, 8, 64 << 30)
    central[24:28] = struct.pack("<I", 0xFFFFFFFF)
    central[30:32] = struct.pack("<H", extra_len + len(extra))
    insert_at = 46 + name_len + extra_len
    central[insert_at:insert_at] = extra
    end = central.index(b"PK\x05\x06")
    (cd_size,) = struct.unpack("<I", central[end + 12:end + 16])
    central[end + 12:end + 16] = struct.pack("<I", cd_size + len(extra))
    return bytes(head + central)


# -- the cases -----------------------------------------------------------------

def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES: list[Case] = [
    # JSONL ------------------------------------------------------------------
    Case("pairs_malformed.jsonl", "a record with a missing comma between fields",
         IMPORT_PAIRS, r"line 3.*malformed JSON",
         lambda: lines(PAIR, PAIR, tail='{"prompt": "a", "chosen": "b" "rejected": "c"}\n')),
    Case("pairs_truncated.jsonl", "the last record is cut off mid-string",
         IMPORT_PAIRS, r"line 2.*malformed JSON",
         lambda: lines(PAIR, tail='{"prompt": "a", "chosen": "b", "rej')),
    Case("pairs_not_object.jsonl", "a line holds a JSON list, not an object",
         IMPORT_PAIRS, r"line 2.*expected a JSON object, got a list",
         lambda: lines(PAIR, ["a", "b", "c"])),
    Case("pairs_missing_field.jsonl", "no 'rejected' field",
         IMPORT_PAIRS, r"line 1.*field 'rejected'.*missing",
         lambda: lines({"prompt": "p", "chosen": "c"})),
    Case("pairs_chosen_number.jsonl", "'chosen' is a number, not a string",
         IMPORT_PAIRS, r"line 2.*field 'chosen'.*expected a string, got a number",
         lambda: lines(PAIR, {**PAIR, "chosen": 42})),
    Case("pairs_prompt_object.jsonl", "'prompt' is an object",
         IMPORT_PAIRS, r"field 'prompt'.*expected a string",
         lambda: lines({**PAIR, "prompt": {"text": "hi"}})),
    Case("pairs_conversational.jsonl", "'chosen' is a list of chat messages",
         IMPORT_PAIRS, r"field 'chosen'.*conversational",
         lambda: lines({**PAIR, "chosen": [{"role": "assistant", "content": "x"}]})),
    Case("pairs_deep_nesting.jsonl", "an extra field nested 20,000 lists deep",
         IMPORT_PAIRS, r"line 1.*nested too deeply",
         lambda: ('{"prompt": "p", "chosen": "c", "rejected": "r", "x": ' + deep(20_000)
                  + "}\n").encode()),
    Case("pairs_non_utf8.jsonl", "Latin-1 bytes, not UTF-8",
         IMPORT_PAIRS, r"line 2.*not valid UTF-8",
         lambda: lines(PAIR) + '{"prompt": "caf\xe9", "chosen": "c", "rejected": "r"}\n'
         .encode("latin-1")),
    Case("pairs_utf16.jsonl", "the whole file is UTF-16 with a byte-order mark",
         IMPORT_PAIRS, r"line 1.*not valid UTF-8",
         lambda: json.dumps(PAIR).encode("utf-16")),
    Case("pairs_lone_surrogate.jsonl", "a \\ud800 escape: an unpaired surrogate, not text",
         IMPORT_PAIRS, r"line 1.*surrogate",
         lambda: b'{"prompt": "p", "chosen": "bad \\ud800 text", "rejected": "r"}\n'),
    Case("pairs_nan.jsonl", "a NaN token in an extra field",
         IMPORT_PAIRS, r"line 1.*non-finite number NaN",
         lambda: b'{"prompt": "p", "chosen": "c", "rejected": "r", "score": NaN}\n'),
    Case("pairs_infinity.jsonl", "-Infinity in an extra field",
         IMPORT_PAIRS, r"line 1.*non-finite number -Infinity",
         lambda: b'{"prompt": "p", "chosen": "c", "rejected": "r", "score": -Infinity}\n'),
    Case("pairs_overflow.jsonl", "1e999, a literal that overflows to infinity",
         IMPORT_PAIRS, r"line 1.*non-finite number 1e999",
         lambda: b'{"prompt": "p", "chosen": "c", "rejected": "r", "score": 1e999}\n'),
    Case("pairs_huge_integer.jsonl", "an integer with 50,000 digits",
         IMPORT_PAIRS, r"line 1.*unreadable JSON value",
         lambda: b'{"prompt": "p", "chosen": "c", "rejected": "r", "n": ' + b"9" * 50_000
         + b"}\n"),
    Case("pairs_empty.jsonl", "an empty file", IMPORT_PAIRS, r"the file is empty", lambda: b""),
    Case("pairs_blank.jsonl", "only blank lines", IMPORT_PAIRS, r"holds no records",
         lambda: b"\n  \n\t\n"),
    Case("pairs_truncated.jsonl.gz", "a gzip stream cut in half",
         IMPORT_PAIRS, r"truncated or corrupt gzip",
         lambda: half(gz(lines(*[{**PAIR, "id": i, "chosen": f"reply {i * 7919 % 10007}"}
                                 for i in range(300)])))),
    Case("pairs_garbage.jsonl.gz", "gzip magic bytes followed by random bytes",
         IMPORT_PAIRS, r"truncated or corrupt gzip",
         lambda: b"\x1f\x8b\x08\x00" + random_bytes(2000, 1)),
    Case("hh_rlhf_wrong_type.jsonl", "an HH-RLHF record whose 'rejected' is null",
         IMPORT_HH, r"line 1.*field 'rejected'.*expected a string, got null",
         lambda: lines({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": None})),
    Case("labels_bad_label.jsonl", "label 'maybe'",
         IMPORT_LABELS, r"line 2.*field 'label'.*'maybe'",
         lambda: lines(LABEL, {**LABEL, "label": "maybe"})),
    Case("labels_label_list.jsonl", "label is a list",
         IMPORT_LABELS, r"line 1.*field 'label'.*a list",
         lambda: lines({**LABEL, "label": [1]})),
    Case("labels_response_object.jsonl", "response is an object",
         IMPORT_LABELS, r"line 1.*field 'response'.*expected a string",
         lambda: lines({**LABEL, "response": {"text": "x"}})),
    Case("labels_category_number.jsonl", "category is a number",
         IMPORT_LABELS, r"line 1.*field 'category'.*expected a string or null",
         lambda: lines({**LABEL, "category": 7})),
    Case("demos_ragged.jsonl", "observations of different widths in one trajectory",
         IMPORT_DEMOS, r"line 1.*field 'obs'.*ragged",
         lambda: lines({"obs": [[0.0, 1.0], [1.0, 2.0, 3.0]]})),
    Case("demos_obs_string.jsonl", "an observation holds a string",
         IMPORT_DEMOS, r"line 1.*field 'obs'.*expected numbers, got a string",
         lambda: lines({"obs": [[0.0, 1.0], [1.0, "a"]]})),
    Case("demos_obs_not_list.jsonl", "'obs' is a string",
         IMPORT_DEMOS, r"line 1.*field 'obs'.*expected a non-empty list",
         lambda: lines({"obs": "0 1 2"})),
    Case("demos_float32_overflow.jsonl", "an observation too large for float32",
         IMPORT_DEMOS, r"line 1.*field 'obs'.*too large for float32",
         lambda: lines({"obs": [[0.0, 1e300], [1.0, 2.0]]})),
    Case("demos_acts_mismatch.jsonl", "1 action for 4 observations",
         IMPORT_DEMOS, r"line 1.*field 'acts'",
         lambda: lines({"obs": [[0.0], [1.0], [2.0], [3.0]], "acts": [1]})),
    # CSV --------------------------------------------------------------------
    Case("pairs_unterminated_quote.csv", "a quoted field that never closes (truncated)",
         IMPORT_PAIRS, r"malformed CSV",
         lambda: csv_text('prompt,chosen,rejected\na,b,c\na,"b is cut')),
    Case("pairs_field_count.csv", "a row with four fields under a three-column header",
         IMPORT_PAIRS, r"line 3.*has 4 fields; the header has 3",
         lambda: csv_text("prompt,chosen,rejected\na,b,c\na,b,c,d\n")),
    Case("pairs_header_only.csv", "a header row and no records",
         IMPORT_PAIRS, r"holds no records", lambda: csv_text("prompt,chosen,rejected\n")),
    Case("pairs_duplicate_header.csv", "the header names 'chosen' twice",
         IMPORT_PAIRS, r"empty or repeated column names",
         lambda: csv_text("prompt,chosen,chosen\na,b,c\n")),
    Case("labels_missing_column.csv", "no 'label' column",
         IMPORT_LABELS, r"field 'label'.*missing",
         lambda: csv_text("prompt,response\na,b\n")),
    Case("labels_non_utf8.csv", "Windows-1252 bytes in a response",
         IMPORT_LABELS, r"line 2.*not valid UTF-8",
         lambda: "prompt,response,label\nq,\u201csmart quotes\u201d,safe\n".encode("cp1252")),
    # Parquet ----------------------------------------------------------------
    Case("pairs_truncated.parquet", "the footer is cut off",
         IMPORT_PAIRS, r"not a readable Parquet file",
         lambda: parquet({"prompt": ["a"] * 100, "chosen": ["b"] * 100,
                          "rejected": ["c"] * 100})[:-40]),
    Case("pairs_random.parquet", "random bytes with a .parquet name",
         IMPORT_PAIRS, r"not a readable Parquet file", lambda: random_bytes(4096, 2)),
    Case("pairs_wrong_type.parquet", "'chosen' is an integer column",
         IMPORT_PAIRS, r"record 0.*field 'chosen'.*expected a string, got a number",
         lambda: parquet({"prompt": ["a"], "chosen": [1], "rejected": ["c"]})),
    Case("labels_label_struct.parquet", "'label' is a struct column",
         IMPORT_LABELS, r"record 0.*field 'label'.*an object",
         lambda: parquet({"prompt": ["a"], "response": ["b"], "label": [{"safe": True}]})),
    Case("labels_label_nan.parquet", "'label' is a float column holding NaN",
         IMPORT_LABELS, r"record 1.*field 'label'",
         lambda: parquet({"prompt": ["a", "b"], "response": ["r", "s"],
                          "label": [1.0, float("nan")]})),
    Case("pairs_no_rows.parquet", "a valid schema and zero rows",
         IMPORT_PAIRS, r"holds no records",
         lambda: parquet({"prompt": [], "chosen": [], "rejected": []})),
    # whole-document JSON (JailbreakBench) --------------------------------------
    Case("jbb_not_object.json", "the document is a list",
         IMPORT_JBB, r"expected a JSON object with 'jailbreaks', got a list",
         lambda: b'[{"jailbreaks": []}]'),
    Case("jbb_malformed.json", "the document is cut off",
         IMPORT_JBB, r"malformed JSON",
         lambda: b'{"parameters": {}, "jailbreaks": [{"index": 0, "goal": "g", "prompt": '),
    Case("jbb_jailbroken_string.json", "'jailbroken' is the string \"yes\"",
         IMPORT_JBB, r"record 0.*field 'jailbroken'.*expected true or false",
         lambda: json.dumps({"parameters": {}, "jailbreaks": [
             {"index": 0, "goal": "g", "prompt": "p", "response": "r",
              "jailbroken": "yes"}]}).encode()),
    Case("jbb_deep.json", "the document nests 50,000 lists deep",
         IMPORT_JBB, r"nested too deeply",
         lambda: ('{"parameters": {}, "jailbreaks": ' + deep(50_000) + "}").encode()),
    Case("jbb_infinity.json", "a score of Infinity",
         IMPORT_JBB, r"non-finite number Infinity",
         lambda: b'{"parameters": {"temperature": Infinity}, "jailbreaks": []}'),
    # npz ----------------------------------------------------------------------
    Case("demos_pickled.npz", "'obs' is a pickled object array (never unpickled)",
         IMPORT_DEMOS, r"field 'obs'.*pickled Python objects", npz_pickled),
    Case("demos_truncated.npz", "the archive is cut off",
         IMPORT_DEMOS, r"truncated", lambda: npz(rollouts())[:-60]),
    Case("demos_random.npz", "random bytes with a .npz name",
         IMPORT_DEMOS, r"not an .npz \(zip\) archive", lambda: random_bytes(3000, 3)),
    Case("demos_nan.npz", "a NaN in trajectory 1's observations",
         IMPORT_DEMOS, r"record 1.*field 'obs'.*NaN", npz_nan),
    Case("demos_inf_acts.npz", "an infinite action",
         IMPORT_DEMOS, r"field 'acts'.*NaN or an infinite",
         lambda: npz_with(acts=np.r_[np.zeros(14), np.inf])),
    Case("demos_obs_strings.npz", "'obs' is an array of strings",
         IMPORT_DEMOS, r"field 'obs'.*expected numbers, got dtype",
         lambda: npz_with(obs=np.array([["a", "b"]] * 18))),
    Case("demos_complex.npz", "'obs' is complex-valued",
         IMPORT_DEMOS, r"field 'obs'.*expected numbers, got dtype complex",
         lambda: npz_with(obs=np.ones((18, 4), np.complex64))),
    Case("demos_bad_indices.npz", "trajectory boundaries that go backwards",
         IMPORT_DEMOS, r"field 'indices'.*increase strictly",
         lambda: npz_with(indices=np.array([10, 5]))),
    Case("demos_missing_obs.npz", "no 'obs' array",
         IMPORT_DEMOS, r"field 'obs'.*missing array",
         lambda: npz({"acts": np.zeros(5)})),
    Case("demos_huge_declared.npz", "'obs' declares 10^12 x 4 float64 values and holds 32 bytes",
         IMPORT_DEMOS, r"field 'obs'.*declares", npz_huge_declared),
    # ONNX ---------------------------------------------------------------------
    Case("model_empty.onnx", "0 bytes", MODEL_OBS, r"the file is empty", lambda: b""),
    Case("model_random.onnx", "random bytes", MODEL_OBS,
         r"not a valid ONNX model|cannot load the model", lambda: random_bytes(3000, 4)),
    Case("model_truncated.onnx", "a valid model cut in half", MODEL_OBS,
         r"not a valid ONNX model|cannot load the model", lambda: reward_model()[:70]),
    Case("model_no_nodes.onnx", "a graph with no nodes", MODEL_OBS,
         r"no graph nodes", onnx_no_nodes),
    Case("model_wrong_width.onnx", "text-embedding input 10 wide (the encoder gives 384)",
         MODEL_TEXT, r"expected input width 384 \(response\) or 768", lambda: reward_model(10)),
    Case("model_wrong_dtype.onnx", "an int64 input where a float one is needed", MODEL_OBS,
         r"expected a float input, found tensor\(int64\)", onnx_wrong_dtype),
    Case("model_wrong_rank.onnx", "a [N, 3, 4] input where [batch, width] is needed",
         MODEL_OBS, r"expected input 'x' of shape \[batch, width\]", onnx_rank3),
    Case("model_custom_domain.onnx", "a node from the custom domain com.evil", MODEL_OBS,
         r"cannot load the model.*com\.evil", onnx_custom_domain),
    Case("model_unknown_op.onnx", "an op type that does not exist (FrobnicateTensor)",
         MODEL_OBS, r"cannot load the model.*FrobnicateTensor", onnx_unknown_op),
    Case("model_huge_initializer.onnx", "a [4, 10^9] initializer with no data", MODEL_OBS,
         r"'w'.*\[4, 1000000000\]", onnx_huge_initializer),
    Case("model_huge_constant.onnx", "a Constant of shape [10^6, 10^6] with no data",
         MODEL_OBS, r"'c'.*\[1000000, 1000000\]", onnx_huge_constant),
    Case("model_constant_of_shape.onnx",
         "ConstantOfShape filling [40000, 40000] (6.4 GB) at run time", MODEL_OBS,
         r"'c'.*\[40000, 40000\]", lambda: onnx_constant_of_shape(40_000)),
    Case("model_huge_input.onnx", "an input of fixed shape [10^9, 4]", MODEL_OBS,
         r"more than a test run allows|'score' has shape \[1000000000, 1\]",
         lambda: reward_model(dims=[1_000_000_000, 4])),
    Case("model_infinite_loop.onnx", "a Loop of 2^62 iterations that never stops", MODEL_OBS,
         r"did not finish", onnx_infinite_loop),
    Case("model_external_data.onnx", "weights 'stored' in ../../../etc/passwd", MODEL_OBS,
         r"external data", onnx_external_data),
    Case("model_string_output.onnx", "the output is a string tensor", MODEL_OBS,
         r"output 'score' is a tensor\(string\); expected a numeric tensor", onnx_string_output),
    Case("model_wrong_output_rank.onnx", "an output of shape [N, 2, 2]", MODEL_OBS,
         r"expected output 'score' of shape \[N\] or \[N, C\]", onnx_wrong_output_rank),
    Case("token_model_ok.onnx", "(helper: a valid text-tokens model)", (), "", token_model_ok),
    Case("token_tokenizer_ok.json", "(helper: a valid tokenizer.json)", (), "", tokenizer_ok),
    Case("tokenizer_malformed.json", "a tokenizer.json that is not JSON", TOKENIZER,
         r"not a valid tokenizer.json", lambda: b'{"version": "1.0", "model": '),
    Case("tokenizer_non_utf8.json", "a tokenizer.json in Latin-1", TOKENIZER,
         r"not a UTF-8 tokenizer.json", lambda: '{"caf\xe9": 1}'.encode("latin-1")),
    # releases -----------------------------------------------------------------
    Case("release_zip_slip.zip", "a member named ../../evil.sh", VERIFY_RELEASE,
         r"would escape the release folder",
         lambda: zip_of({**RELEASE_LOOKALIKE, "../../evil.sh": b"#!/bin/sh\nrm -rf ~\n"})),
    Case("release_absolute_path.zip", "a member named /etc/cron.d/evil", VERIFY_RELEASE,
         r"would escape the release folder",
         lambda: zip_of({**RELEASE_LOOKALIKE, "/etc/cron.d/evil": b"* * * * * root true\n"})),
    Case("release_backslash.zip", "a member named ..\\..\\evil.bat", VERIFY_RELEASE,
         r"would escape the release folder",
         lambda: zip_of({**RELEASE_LOOKALIKE, "..\\..\\evil.bat": b"del /q *\n"})),
    Case("release_random.zip", "random bytes with a .zip name", VERIFY_RELEASE,
         r"neither a release folder nor a zip", lambda: random_bytes(2048, 5)),
    Case("release_truncated.zip", "a zip cut in half", VERIFY_RELEASE,
         r"damaged or unsupported zip|neither a release folder nor a zip",
         lambda: zip_of({n: d * 200 for n, d in RELEASE_LOOKALIKE.items()})[:200]),
    Case("release_declares_64gib.zip", "a member that claims to unpack to 64 GiB",
         VERIFY_RELEASE, r"unpacks to more than", zip_declaring_huge_size),
    Case("release_missing_files.zip", "only model.onnx, no manifest or signature",
         VERIFY_RELEASE, r"missing files: manifest.json, governance.json, signature.json",
         lambda: zip_of({"model.onnx": b"onnx"})),
    Case("release_extra_file.zip", "an extra file the signature does not cover",
         VERIFY_RELEASE, r"unexpected file not covered by the signature: run.sh",
         lambda: zip_of({**RELEASE_LOOKALIKE, "run.sh": b"echo hi\n"})),
    Case("release_signature_not_json.zip", "signature.json is not JSON", VERIFY_RELEASE,
         r"signature.json is not valid JSON",
         lambda: zip_of({**RELEASE_LOOKALIKE, "signature.json": b"\xff\xfe not json"})),
    Case("release_signature_deep.zip", "signature.json nests 20,000 lists deep",
         VERIFY_RELEASE, r"signature.json is not valid JSON",
         lambda: zip_of({**RELEASE_LOOKALIKE, "signature.json": deep(20_000).encode()})),
    # oracle queries -----------------------------------------------------------
    Case("oracle_malformed.jsonl", "a query line that starts as JSON and is cut off",
         ORACLE_OBS, r"line 2.*malformed JSON",
         lambda: b'{"obs": [1, 2, 3, 4]}\n{"obs": [1, 2,\n'),
    Case("oracle_nan.jsonl", "NaN inside an observation", ORACLE_OBS, r"line 2",
         lambda: b'{"obs": [1, 2, 3, 4]}\n{"obs": [1, NaN, 3, 4]}\n'),
    Case("oracle_obs_not_list.jsonl", "'obs' is a number", ORACLE_OBS,
         r"input 2.*'obs'", lambda: b'{"obs": [1, 2, 3, 4]}\n{"obs": 5}\n'),
    Case("oracle_obs_strings.jsonl", "a bare list of strings as an observation", ORACLE_OBS,
         r"input 1.*finite numbers", lambda: b'["a", "b", "c", "d"]\n'),
    Case("oracle_obs_wrong_width.jsonl", "a 3-wide observation for a 4-wide model",
         ORACLE_OBS, r"4-wide observations", lambda: b'{"obs": [1, 2, 3]}\n'),
    Case("oracle_text_for_obs.txt", "a plain text line sent to an observation model",
         ORACLE_OBS, r"input 1.*observation", lambda: b"how do I make a bomb\n"),
    Case("oracle_response_number.jsonl", "'response' is a number", ORACLE_TEXT,
         r"input 1.*'response'.*string", lambda: b'{"prompt": "p", "response": 5}\n'),
    Case("oracle_prompt_list.jsonl", "'prompt' is a list", ORACLE_TEXT,
         r"input 1.*'prompt'.*string", lambda: b'{"prompt": ["p"], "response": "r"}\n'),
    Case("oracle_obs_for_text.jsonl", "a list of numbers sent to a text model", ORACLE_TEXT,
         r"input 1.*text model", lambda: b"[1, 2, 3, 4]\n"),
    Case("oracle_non_utf8.txt", "Latin-1 bytes in a plain text query", ORACLE_TEXT,
         r"line 2.*not valid UTF-8", lambda: b"hello\ncaf\xe9\n"),
    Case("oracle_deep.jsonl", "a query nested 20,000 lists deep", ORACLE_TEXT,
         r"line 1.*nested too deeply", lambda: (deep(20_000) + "\n").encode()),
]

TEST_TIME_CASES = [
    ("pairs_50mb_line.jsonl", "one 50 MB line", "import pairs", "longer than the 16 MiB limit"),
    ("labels_50mb_line.csv", "a 50 MB CSV field", "import labels", "longer than the 16 MiB limit"),
    ("oracle_50mb_line.txt", "one 50 MB query line", "oracle --model text@1", "longer than"),
    ("release-altered-signature", "a real signed release, one hex digit of the signature "
     "changed", "verify-release", "signature does not match"),
    ("release-altered-manifest", "a real signed release, manifest.json edited",
     "verify-release", "manifest.json was changed"),
    ("release-altered-model.zip", "a real signed release zip, one byte of model.onnx flipped",
     "verify-release", "model.onnx was changed"),
    ("release-resigned", "a real release re-signed with another key, checked against the "
     "workspace's trusted public key", "verify-release --key", "not the trusted key"),
]


def is_case(case: Case) -> bool:
    return bool(case.command)


def write_corpus(folder: Path = CORPUS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in CASES:
        path = folder / case.file
        path.write_bytes(case.make())
        written.append(path)
    return written


def manifest_text() -> str:
    rows = ["# The hostile-input corpus",
            "",
            "Bad files the `workstation` CLI must refuse with exactly one line on stderr",
            "(`error: ...`), a non-zero exit, in bounded time, leaving the workspace's",
            "logical content (`workstation content-hash`) unchanged. Written by",
            "`python tests/hostile/make_corpus.py` into `corpus/`; checked by",
            "`tests/test_hostile_corpus.py`. In commands, `{file}` is the corpus file,",
            "`{dir}` the corpus folder; the test workspace holds a 4-wide observation",
            "model `obs@1` and a text-embedding model `text@1`.",
            "",
            "| file | what is wrong | command | the error says |",
            "|---|---|---|---|"]
    for case in CASES:
        if is_case(case):
            command = "workstation " + " ".join(case.command)
            rows.append(f"| `{case.file}` | {_cell(case.wrong)} | `{command}` | "
                        f"`{_cell(case.expect)}` |")
    rows += ["", "Helper files (valid, used by the tokenizer cases): " + ", ".join(
        f"`{c.file}`" for c in CASES if not is_case(c)) + ".", "",
        "## Made at test time (too big to commit, or need a real signed release)", "",
        "| input | what is wrong | command | the error says |", "|---|---|---|---|"]
    for name, wrong, command, expect in TEST_TIME_CASES:
        rows.append(f"| `{name}` | {wrong} | `workstation {command}` | `{expect}` |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> int:
    files = write_corpus()
    MANIFEST.write_text(manifest_text(), encoding="utf-8")
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files ({total:,} bytes) to {CORPUS} and {MANIFEST.name}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
