"""The scoring bundle: everything needed to score a corpus without a workspace.

A scoring bundle is an oracle bundle (model.onnx, oracle.json with the model
manifest and the tokenizer of a token model, oracle.npz; see
``workstation.oracle``) plus, for a text-embedding model, the encoder it was
registered with (``encoder/encoder.onnx``, ``encoder/tokenizer.json``,
``encoder/encoder.json``), and ``bundle.json``: the model's reference and
sha256, every file's sha256 and size, and an Ed25519 signature over all of
that by the analyst's identity. One format: ``SafetyOracle.load`` reads the
same folder. A bundle made without its encoder scores inputs that carry
their embeddings already.

``verify_files`` refuses a bundle with any changed, missing or unlisted file,
a signature that does not verify, or a model.onnx that is not the file the
manifest names; ``scale run`` calls it on every worker before loading.
The bundle's hash is the sha256 of bundle.json (which lists every file's).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workstation.errors import WorkstationError
from workstation.hashing import canonical_json, sha256_bytes
from workstation.offline_verify import ALGORITHM, key_id_of

FORMAT = "workstation.scoring-bundle/1"
MANIFEST = "bundle.json"
ENCODER_DIR = "encoder"
ENCODER_FILES = ("encoder.onnx", "tokenizer.json", "encoder.json")
SCORABLE_KINDS = ("text-embedding", "text-tokens")


class BundleSigner(Protocol):
    """Who signs a bundle: a key id, its public PEM and a sign function."""

    key_id: str
    public_pem: str

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class KeySigner:
    """A BundleSigner from a key id, its public PEM and a signing function."""

    key_id: str
    public_pem: str
    sign: Callable[[bytes], bytes]


@dataclass(frozen=True)
class BundleRecord:
    """What ``make_bundle`` wrote."""

    path: str
    sha256: str
    model: str
    model_sha256: str
    input_kind: str
    files: dict[str, dict[str, Any]]
    key_id: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- making ---------------------------------------------------------------------

def make_bundle(ws: Any, ref: str, out_dir: str | Path, signer: BundleSigner, *,
                encoder: Any = None, analyst: str | None = None,
                include_encoder: bool = True) -> BundleRecord:
    """Write the scoring bundle of model ``ref`` into ``out_dir`` (new or empty).
    ``include_encoder=False`` leaves the encoder out, for inputs that carry
    their embeddings (``*_embedding`` columns) already."""
    from workstation.models.registry import resolve
    from workstation.workspace import default_analyst, now_iso

    version = resolve(ws, ref)
    if version.input_kind not in SCORABLE_KINDS:
        raise WorkstationError(f"{version.ref} takes {version.input_kind}; scale runs score "
                               f"text (pairs and labeled responses) with a text-embedding or "
                               f"text-tokens model")
    out = _empty_folder(Path(out_dir))
    try:
        _oracle_of(ws, version, encoder).save(out)
        if version.input_kind == "text-embedding" and include_encoder:
            _copy_encoder(version, out / ENCODER_DIR)
        statement = {"format": FORMAT, "model": version.ref, "model_sha256": version.sha256,
                     "input_kind": version.input_kind,
                     "score_type": version.manifest["score_type"],
                     "encoder": version.manifest["input"].get("encoder"),
                     "created_at": now_iso(), "created_by": analyst or default_analyst(),
                     "workspace": str(getattr(ws, "path", "")),
                     "files": {name: {"sha256": sha256_bytes(data), "size": len(data)}
                               for name, data in sorted(_read_tree(out).items())}}
        signature = signer.sign(canonical_json(statement).encode("utf-8"))
        manifest = {**statement, "signature": {
            "algorithm": ALGORITHM, "key_id": signer.key_id, "public_key_pem": signer.public_pem,
            "signature": signature.hex()}}
        data = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
        (out / MANIFEST).write_bytes(data)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return BundleRecord(str(out), sha256_bytes(data), version.ref, version.sha256,
                        version.input_kind, statement["files"], signer.key_id)


def _empty_folder(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkstationError(f"{out} exists and is not an empty folder; give a new one")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _oracle_of(ws: Any, version: Any, encoder: Any) -> Any:
    """The model's oracle: with its audited space for a text-embedding model
    (the bundle then answers oracle queries too), without for a token model,
    which the oracle does not answer for."""
    from workstation.models.registry import load_onnx, load_tokenizer_json
    from workstation.oracle import SafetyOracle, _threshold

    if version.input_kind == "text-embedding":
        return SafetyOracle.from_workspace(ws, version.ref, encoder=encoder)
    return SafetyOracle(load_onnx(ws, version), {**version.manifest,
                                                 "input_kind": version.input_kind},
                        version.ref, None, threshold=_threshold(ws, version),
                        tokenizer_json=load_tokenizer_json(ws, version))


def _copy_encoder(version: Any, folder: Path) -> None:
    """The workstation's encoder, refused unless it is the one the model was
    registered with."""
    from workstation import encoder as enc

    source = enc.model_dir()
    facts = enc._model_facts(source)
    encoder_id = f"{enc.MODEL_NAME}@{enc.source_sha256(source)[:12]}"
    wanted = version.manifest["input"].get("encoder")
    if wanted and wanted != encoder_id:
        raise WorkstationError(f"{version.ref} was registered for encoder {wanted}; this "
                               f"installation has {encoder_id}: no bundle written")
    folder.mkdir()
    shutil.copyfile(enc.prepare_encoder(), folder / "encoder.onnx")
    shutil.copyfile(source / "tokenizer.json", folder / "tokenizer.json")
    (folder / "encoder.json").write_text(json.dumps(
        {"id": encoder_id, "dim": facts["dim"], "max_seq_length": facts["max_seq_length"]},
        sort_keys=True))


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- reading and verifying --------------------------------------------------------

def read_files(folder: str | Path) -> dict[str, bytes]:
    """Every file of a bundle folder, by its path inside the folder."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise WorkstationError(f"{folder} is not a scoring bundle (no {MANIFEST}); make one "
                               f"with `scale bundle`")
    return _read_tree(folder)


def bundle_sha256(files: dict[str, bytes]) -> str:
    """The bundle's hash: sha256 of its bundle.json."""
    return sha256_bytes(files[MANIFEST])


def verify_files(files: dict[str, bytes]) -> dict[str, Any]:
    """The bundle's manifest, once every file, the signature and the model's
    hash check out; otherwise WorkstationError naming the first problem."""
    try:
        manifest = json.loads(files[MANIFEST])
    except (KeyError, ValueError):
        raise WorkstationError(f"the scoring bundle has no readable {MANIFEST}") from None
    if manifest.get("format") != FORMAT:
        raise WorkstationError(f"not a scoring bundle of format {FORMAT} "
                               f"(found {manifest.get('format')!r})")
    listed = manifest.get("files") or {}
    present = set(files) - {MANIFEST}
    for name in sorted(present | set(listed)):
        if name not in listed:
            raise WorkstationError(f"the scoring bundle holds {name}, which its signature "
                                   f"does not cover; refused")
        if name not in present:
            raise WorkstationError(f"the scoring bundle is missing {name}; refused")
        if sha256_bytes(files[name]) != listed[name]["sha256"]:
            raise WorkstationError(f"the scoring bundle's {name} was changed after signing "
                                   f"(sha256 differs); refused")
    check_signature(manifest)
    if sha256_bytes(files["model.onnx"]) != manifest["model_sha256"]:
        raise WorkstationError("the scoring bundle's model.onnx is not the model it names; "
                               "refused")
    return manifest


def check_signature(manifest: dict[str, Any]) -> None:
    sig = manifest.get("signature") or {}
    statement = {k: v for k, v in manifest.items() if k != "signature"}
    try:
        key = serialization.load_pem_public_key(sig["public_key_pem"].encode("ascii"))
        if not isinstance(key, Ed25519PublicKey) or key_id_of(key) != sig.get("key_id"):
            raise ValueError("not the named Ed25519 key")
        key.verify(bytes.fromhex(sig["signature"]),
                   canonical_json(statement).encode("utf-8"))
    except (KeyError, ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise WorkstationError("the scoring bundle's signature does not verify; "
                               "refused") from None


def unpack(files: dict[str, bytes], folder: str | Path | None = None) -> Path:
    """Write verified bundle files into ``folder`` (default a new temporary
    folder, which the caller removes), for loaders that read paths."""
    root = Path(folder) if folder is not None else Path(
        tempfile.mkdtemp(prefix="workstation-bundle-"))
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    os.chmod(root, 0o700)
    return root
