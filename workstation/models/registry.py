"""The model registry: versioned, content-addressed ONNX reward models.

An ONNX file (and, for text-tokens models, its tokenizer.json) is stored once
in ``blobs`` under its sha256; each registration adds a ``model_versions``
row whose version counts up per model name from 1, with a manifest recording
the input kind, the output and column used and what kind of score it is,
the parent version, who and when, free notes, and the ONNX file's own
metadata. Registration refuses a model that does not fit its input kind
(see ``workstation.models.onnx_model``), and a version that would score
exactly as its parent does (the same ONNX bytes and the same output, column
and score type), and leaves the workspace unchanged.

Manifest keys: ``name``, ``version``, ``input_kind``; ``input`` (what the
model takes: for text-embedding ``encoder``, ``dim``, ``width``, ``layout``
"response" or "prompt+response"; for text-tokens the input ``names``,
``type``, ``max_length`` (tokens a text is cut to), ``text_format``
("pair", "response" or "chat-template", with ``chat_template``, its
``chat_template_sha256`` and the ``special_tokens`` it is rendered with) and
``pooling`` when known ("cls", "last-token", "first-token"); for observation
``obs_dim``); how the output
becomes a score: ``output``, ``column`` (null for an [N] / [N, 1] output),
``score_type`` ("probability", "logit" or "reward"), ``zipmap``; ``parent``
("name@version") and ``parent_id``; ``created_by``, ``created_at``,
``notes``; ``sha256``, ``size_bytes``, ``source``; ``onnx`` (producer,
opsets, IR version, graph inputs/outputs with shapes and types,
metadata_props); ``tokenizer_sha256`` for text-tokens; plus any extras
given to ``add_model_bytes`` (e.g. ``lineage``, ``metrics``).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workstation.errors import WorkstationError
from workstation.hashing import sha256_bytes
from workstation.models.inspection import inspect_model
from workstation.models.onnx_model import OnnxRunner
from workstation.models.text_format import TextFormat, chat_template_config, text_format_for
from workstation.workspace import Workspace, default_analyst, now_iso

_COLUMNS = ("id", "model", "version", "sha256", "input_kind", "manifest", "parent_id",
            "created_by", "created_at")
# Manifest keys registration writes; extras may not overwrite them.
_CORE_KEYS = {"name", "version", "input_kind", "input", "output", "column", "score_type",
              "zipmap", "parent", "parent_id", "created_by", "created_at", "notes", "sha256",
              "size_bytes", "source", "onnx", "tokenizer_sha256"}
_RUNNER_CACHE_SIZE = 8
_runners: "OrderedDict[tuple, OnnxRunner]" = OrderedDict()
_runners_lock = threading.Lock()  # GUI jobs load models from worker threads


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a reward model."""

    id: int
    model: str
    version: int
    sha256: str
    input_kind: str
    manifest: dict[str, Any]
    parent_id: int | None
    created_by: str
    created_at: str

    @property
    def ref(self) -> str:
        """``name@version``, the way the CLI names it."""
        return f"{self.model}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ref": self.ref}


# -- registering -------------------------------------------------------------

def add_model(ws: Workspace, path: str | Path, name: str, input_kind: str, *,
              output: str | None = None, column: int | None = None,
              parent: str | int | ModelVersion | None = None, notes: str = "",
              analyst: str | None = None, tokenizer: str | Path | None = None,
              encoder: Any = None, score_type: str | None = None,
              text_format: str | None = None, max_length: int | None = None,
              tokenizer_config: str | Path | None = None) -> ModelVersion:
    """Register the ONNX file at ``path`` as the next version of ``name``.

    For ``text-tokens`` the tokenizer is ``tokenizer`` or the ``tokenizer.json``
    beside the file; ``text_format`` (``pair``, ``response``, ``chat-template``)
    and ``max_length`` say how texts reach it, a chat template coming from
    ``tokenizer_config`` or the ``tokenizer_config.json`` beside the file; a
    ``config.json`` beside it tells the pooling. ``encoder`` (text-embedding)
    defaults to the workspace encoder. Raises ``WorkstationError`` (nothing
    stored) when the model does not fit its input kind."""
    path = Path(path)
    data = _read_file(path, "model")
    tokens = input_kind == "text-tokens"
    if tokenizer is None and tokens:
        beside = path.with_name("tokenizer.json")
        tokenizer = beside if beside.exists() else None
    tokenizer_bytes = _read_file(Path(tokenizer), "tokenizer") if tokenizer is not None else None
    config_path = chat_template_config(path, tokenizer_config)
    fmt = text_format_for(text_format, config_path, str(path)) \
        if text_format is not None else None
    config = path.with_name("config.json")
    config_json = config.read_text(encoding="utf-8", errors="replace") \
        if tokens and config.is_file() else None
    return add_model_bytes(ws, data, name, input_kind, source=str(path), output=output,
                           column=column, parent=parent, notes=notes, analyst=analyst,
                           tokenizer=tokenizer_bytes, encoder=encoder, score_type=score_type,
                           text_format=fmt, max_length=max_length, config_json=config_json)


def add_model_bytes(ws: Workspace, data: bytes, name: str, input_kind: str, *,
                    source: str = "<in-memory model>", output: str | None = None,
                    column: int | None = None, parent: str | int | ModelVersion | None = None,
                    notes: str = "", analyst: str | None = None,
                    tokenizer: bytes | str | None = None, encoder: Any = None,
                    score_type: str | None = None,
                    extras: dict[str, Any] | None = None,
                    text_format: TextFormat | str | None = None,
                    max_length: int | None = None,
                    config_json: str | None = None) -> ModelVersion:
    """Register a model from memory (training code uses this); ``extras`` are
    further manifest keys such as ``lineage`` or ``metrics``. ``text_format``
    is a ``TextFormat`` or the name of one without a template."""
    _check_name(name)
    _check_extras(extras)
    tokenizer_text = _tokenizer_text(tokenizer)
    if isinstance(text_format, str):
        text_format = text_format_for(text_format, None, source)
    encoder_dim = None
    if input_kind == "text-embedding":
        encoder = encoder if encoder is not None else _default_encoder()
        encoder_dim = int(encoder.dim)
    checked = inspect_model(data, input_kind, source=source, encoder_dim=encoder_dim,
                            tokenizer_json=tokenizer_text, output=output, column=column,
                            score_type=score_type, text_format=text_format,
                            max_length=max_length, config_json=config_json)
    if encoder is not None and input_kind == "text-embedding":
        checked["input"]["encoder"] = encoder.id
    with ws.transaction():
        parent_version = _parent(ws, parent)
        _check_changed(data, checked, parent_version, source)
        return _insert(ws, data, name, input_kind, checked, parent_version, notes,
                       analyst or default_analyst(), source, tokenizer_text, extras or {})


def _insert(ws: Workspace, data: bytes, name: str, kind: str, checked: dict[str, Any],
            parent: ModelVersion | None, notes: str, analyst: str, source: str,
            tokenizer_text: str | None, extras: dict[str, Any]) -> ModelVersion:
    sha = _store_blob(ws, data)
    version = int(_one(ws, "SELECT coalesce(max(version), 0) + 1 FROM model_versions "
                           "WHERE model = ?", [name])[0])
    manifest = {"name": name, "version": version, "input_kind": kind, **checked,
                "parent": parent.ref if parent else None,
                "parent_id": parent.id if parent else None, "created_by": analyst,
                "created_at": now_iso(), "notes": notes, "sha256": sha,
                "size_bytes": len(data), "source": source, **extras}
    if tokenizer_text is not None:
        manifest["tokenizer_sha256"] = _store_blob(ws, tokenizer_text.encode("utf-8"))
    row = ModelVersion(ws.next_id("model_versions"), name, version, sha, kind, manifest,
                       manifest["parent_id"], analyst, manifest["created_at"])
    ws.execute("INSERT INTO model_versions (id, model, version, sha256, input_kind, parent_id, "
               "created_by, created_at, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [row.id, name, version, sha, kind, row.parent_id, analyst, row.created_at,
                json.dumps(manifest, ensure_ascii=False)])
    return row


def _check_changed(data: bytes, checked: dict[str, Any], parent: ModelVersion | None,
                   source: str) -> None:
    """Refuse a version that would score exactly as its parent."""
    if parent is None or parent.sha256 != sha256_bytes(data):
        return
    scoring = ("input", "output", "column", "score_type")
    if all(checked.get(k) == parent.manifest.get(k) for k in scoring):
        raise WorkstationError(f"{source} is identical to {parent.ref} (the same ONNX file, "
                               f"read the same way): as a new version it would change nothing; "
                               f"nothing registered")


def _store_blob(ws: Workspace, data: bytes) -> str:
    """Store ``data`` once under its sha256 (a second copy is not written)."""
    sha = sha256_bytes(data)
    ws.execute("INSERT OR IGNORE INTO blobs (sha256, size_bytes, data) VALUES (?, ?, ?)",
               [sha, len(data), data])
    return sha


def _check_name(name: str) -> None:
    if not name or not name.strip() or "@" in name or name != name.strip():
        raise WorkstationError(f"model name {name!r} is not usable: give a non-empty name "
                               f"without '@' or surrounding spaces")


def _check_extras(extras: dict[str, Any] | None) -> None:
    clash = sorted(_CORE_KEYS & set(extras or {}))
    if clash:
        raise WorkstationError(f"manifest extras may not set {', '.join(clash)}: "
                               f"registration writes those itself")


def _read_file(path: Path, what: str) -> bytes:
    if not path.exists():
        raise WorkstationError(f"no {what} file at {path}")
    if path.is_dir():
        raise WorkstationError(f"{path} is a folder, not a {what} file")
    return path.read_bytes()


def _tokenizer_text(tokenizer: bytes | str | None) -> str | None:
    if tokenizer is None or isinstance(tokenizer, str):
        return tokenizer
    try:
        return tokenizer.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkstationError("the tokenizer is not a UTF-8 tokenizer.json") from None


def _default_encoder() -> Any:
    from workstation.encoder import get_encoder

    return get_encoder()


def _parent(ws: Workspace, parent: str | int | ModelVersion | None) -> ModelVersion | None:
    if parent is None or parent == "":
        return None
    if isinstance(parent, ModelVersion):
        return parent
    if isinstance(parent, int):
        return get_version(ws, parent)
    return resolve(ws, parent)


# -- reading -----------------------------------------------------------------

def list_models(ws: Workspace) -> list[ModelVersion]:
    """Every registered version, by model name then version."""
    rows = ws.execute(f"SELECT {', '.join(_COLUMNS)} FROM model_versions "
                      "ORDER BY model, version").fetchall()
    return [_from_row(r) for r in rows]


def get_version(ws: Workspace, version_id: int) -> ModelVersion:
    """The version with database id ``version_id``."""
    row = _one(ws, f"SELECT {', '.join(_COLUMNS)} FROM model_versions WHERE id = ?",
               [version_id])
    if row is None:
        raise WorkstationError(f"no model version with id {version_id}")
    return _from_row(row)


def resolve(ws: Workspace, ref: str | int | ModelVersion) -> ModelVersion:
    """``NAME`` (the latest version) or ``NAME@VERSION``; a ModelVersion or an
    id passes through. Unknown names list the known models."""
    if isinstance(ref, ModelVersion):
        return ref
    if isinstance(ref, int):
        return get_version(ws, ref)
    name, version = split_ref(ref)
    sql = f"SELECT {', '.join(_COLUMNS)} FROM model_versions WHERE model = ? "
    if version is None:
        row = _one(ws, sql + "ORDER BY version DESC LIMIT 1", [name])
    else:
        row = _one(ws, sql + "AND version = ?", [name, version])
    if row is None:
        raise WorkstationError(_unknown_message(ws, name, version))
    return _from_row(row)


def split_ref(ref: str) -> tuple[str, int | None]:
    """NAME@VERSION -> (NAME, VERSION); NAME alone -> (NAME, None)."""
    name, sep, version = str(ref).rpartition("@")
    if not sep:
        return str(ref), None
    if not version.isdigit():
        raise WorkstationError(f"model reference '{ref}' is not NAME or NAME@VERSION "
                               f"(the version is a number)")
    return name, int(version)


def _unknown_message(ws: Workspace, name: str, version: int | None) -> str:
    known = ws.execute("SELECT model, list(version ORDER BY version) FROM model_versions "
                       "GROUP BY model ORDER BY model").fetchall()
    versions = dict(known)
    if name in versions:
        return (f"model '{name}' has no version {version}; its versions are "
                f"{', '.join(map(str, versions[name]))}")
    if not known:
        return f"unknown model '{name}': no models are registered yet (add one with `model add`)"
    listing = "; ".join(f"{m} (versions {', '.join(map(str, v))})" for m, v in known)
    return f"unknown model '{name}'; known models: {listing}"


def _from_row(row: tuple) -> ModelVersion:
    values = dict(zip(_COLUMNS, row))
    values["manifest"] = json.loads(values["manifest"]) if isinstance(values["manifest"], str) \
        else values["manifest"]
    return ModelVersion(**values)


def load_blob(ws: Workspace, sha256: str) -> bytes:
    row = _one(ws, "SELECT data FROM blobs WHERE sha256 = ?", [sha256])
    if row is None:
        raise WorkstationError(f"artifact {sha256[:12]}… is missing from the workspace")
    return bytes(row[0])


def load_onnx(ws: Workspace, version: str | int | ModelVersion) -> bytes:
    """The version's ONNX file, as stored."""
    return load_blob(ws, resolve(ws, version).sha256)


def load_tokenizer_json(ws: Workspace, version: ModelVersion) -> str | None:
    sha = version.manifest.get("tokenizer_sha256")
    return load_blob(ws, sha).decode("utf-8") if sha else None


def load_runner(ws: Workspace, version: str | int | ModelVersion) -> OnnxRunner:
    """A loaded onnxruntime runner for the version (cached by content: the same
    artifact with the same output choice loads once per process)."""
    version = resolve(ws, version)
    m = version.manifest
    key = (version.sha256, m.get("tokenizer_sha256"), m["output"], m.get("column"),
           m["score_type"], json.dumps(m["input"], sort_keys=True))
    with _runners_lock:
        runner = _runners.get(key)
        if runner is not None:
            _runners.move_to_end(key)
            return runner
    runner = OnnxRunner(load_onnx(ws, version), m, load_tokenizer_json(ws, version),
                        source=version.ref)
    with _runners_lock:
        _runners[key] = runner
        while len(_runners) > _RUNNER_CACHE_SIZE:
            _runners.popitem(last=False)
    return runner


def _one(ws: Workspace, sql: str, params: Any = None) -> tuple | None:
    """The first row, reading the result to its end: DuckDB keeps a half-read
    result open, which would block a later sql()/register() on the connection."""
    rows = ws.execute(sql, params).fetchall()
    return rows[0] if rows else None
