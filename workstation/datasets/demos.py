"""Demonstration importers: ``imitation`` rollout archives (.npz) and JSONL.

Each trajectory becomes one ``examples`` row (``n_steps`` = its number of
actions) and its observations become ``demo_steps`` rows, one per
observation: step ``s`` carries ``obs[s]`` and the action taken there, and
the final observation (one more than the actions) has a NULL action.

imitation-npz: keys ``obs, acts, indices, rews, terminal, infos``, loaded
with ``numpy.load(allow_pickle=False)``; ``infos`` (a pickled object array in
real files) is never read, and any other pickled array is refused, as is an
array whose header declares more bytes than the archive holds for it (checked
before numpy allocates room). Only
``obs`` and ``acts`` are required (no ``indices`` = one trajectory). Splits
follow imitation: ``np.split(acts, indices)`` and
``np.split(obs, indices + arange(len(indices)) + 1)``. ``source_index`` is
the trajectory number; ``meta`` keeps its return and terminal flag.

demos-jsonl: one trajectory per line, ``{"obs": [[...], ...], "acts":
[...], "id": ...}``; ``acts`` is optional (without it every step has a NULL
action and ``n_steps`` = len(obs) - 1) and may have len(obs) - 1 entries
(final observation included) or len(obs). Observations must be numbers, of
one width across the whole file.

Observations are stored as FLOAT (float32) and must be finite after that
conversion; actions as DOUBLE. ``meta.act_scalar``/``meta.act_int`` record
the action shape and type so that an export writes them back the same way.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from workstation.datasets.pairs import JSONL_SUFFIXES
from workstation.datasets.reading import (
    Location, has_suffix, head_bytes, iter_jsonl_records, require, require_nonempty,
    scalar_extras, source_id_of, type_name)
from workstation.datasets.registry import Importer, ReadResult, Row, register_importer
from workstation.errors import InputError
from workstation.progress import Progress

_NUMERIC_KINDS = "biuf"  # bool, signed/unsigned int, float: no complex, object, text
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_UNREADABLE = (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError)


# -- imitation .npz --------------------------------------------------------

def read_npz(path: Path, progress: Progress) -> ReadResult:
    require_nonempty(path)
    if not head_bytes(path, 4).startswith(_ZIP_MAGIC):
        raise InputError(str(path), "not an .npz (zip) archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except _UNREADABLE as exc:
        raise InputError(str(path), f"not a readable .npz archive; it may be truncated "
                         f"({exc})") from None
    with archive:
        progress.step(0, 3)
        obs = _numeric(path, "obs", _member(archive, "obs", path), min_ndim=2)
        acts = _numeric(path, "acts", _member(archive, "acts", path), min_ndim=1)
        indices = _indices(path, archive, len(acts))
        rews = _optional(path, archive, "rews", len(acts))
        terminal = _optional(path, archive, "terminal", len(indices) + 1)
        # `infos` is deliberately never touched: it holds pickled objects.
    progress.step(1, 3)
    expected = len(acts) + len(indices) + 1
    if len(obs) != expected:
        raise InputError(str(path), f"has {len(obs)} rows; expected one more than the actions "
                         f"per trajectory ({len(acts)} + {len(indices) + 1} = {expected})",
                         field="obs")
    obs32 = _finite_obs(path, obs.reshape(len(obs), -1), indices + np.arange(len(indices)) + 1)
    _check_finite(path, "acts", acts.reshape(len(acts), -1), indices)
    rows = _npz_rows(obs32, obs.shape[1:], acts, indices, rews, terminal)
    progress.step(3, 3)
    return ReadResult(rows)


def _npz_rows(obs32: np.ndarray, obs_shape: tuple, acts: np.ndarray, indices: np.ndarray,
              rews: np.ndarray | None, terminal: np.ndarray | None) -> list[Row]:
    act_meta = {"act_scalar": acts.ndim == 1, "act_int": acts.dtype.kind in "biu"}
    if len(obs_shape) > 1:
        act_meta["obs_shape"] = list(obs_shape)  # images etc. are stored flattened
    acts2 = acts.reshape(len(acts), -1).astype(np.float64)
    obs_parts = np.split(obs32, indices + np.arange(len(indices)) + 1)
    act_parts = np.split(acts2, indices)
    rew_parts = np.split(rews, indices) if rews is not None else None
    rows = []
    for t, (o, a) in enumerate(zip(obs_parts, act_parts)):
        meta: dict[str, Any] = dict(act_meta)
        if rew_parts is not None:
            meta["return"] = float(rew_parts[t].sum())
        if terminal is not None:
            meta["terminal"] = bool(terminal[t])
        rows.append({"source_index": t, "source_id": None, "obs": o, "acts": a,
                     "n_steps": len(a), "meta": meta})
    return rows


def _member(archive: Any, key: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise InputError(str(path), "missing array", field=key)
    _check_declared_size(archive, key, path)
    try:
        return archive[key]
    except MemoryError:
        raise InputError(str(path), "array too large to load into memory", field=key) from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(str(path), "holds pickled Python objects; refused (never unpickled)",
                             field=key) from None
        raise InputError(str(path), f"unreadable array; the file may be truncated ({exc})",
                         field=key) from None
    except _UNREADABLE as exc:
        raise InputError(str(path), f"unreadable array; the file may be truncated ({exc})",
                         field=key) from None


def _check_declared_size(archive: Any, key: str, path: Path) -> None:
    """Refuse an array whose header declares more bytes than its zip member
    holds, before numpy allocates room for it."""
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    try:
        info = archive.zip.getinfo(f"{key}.npy")
        with archive.zip.open(info) as member:
            reader = readers.get(fmt.read_magic(member))
            if reader is None:
                return  # other header versions: numpy's own checks apply
            shape, _, dtype = reader(member)
    except (*_UNREADABLE, KeyError):
        return  # the real read reports a damaged member
    if dtype.hasobject:
        return  # refused as pickled when read
    declared = dtype.itemsize
    for dim in shape:
        declared *= dim
    if declared > info.file_size:
        raise InputError(str(path), f"declares shape {tuple(shape)} of {dtype} "
                         f"({declared:,} bytes) but holds {info.file_size:,} bytes; refused",
                         field=key)


def _numeric(path: Path, key: str, arr: np.ndarray, min_ndim: int) -> np.ndarray:
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(str(path), f"expected numbers, got dtype {arr.dtype}", field=key)
    if arr.ndim < min_ndim:
        raise InputError(str(path), f"expected at least {min_ndim} dimensions, got shape "
                         f"{arr.shape}", field=key)
    return arr


def _indices(path: Path, archive: Any, n_acts: int) -> np.ndarray:
    if "indices" not in archive.files:
        return np.zeros(0, dtype=np.int64)
    idx = _member(archive, "indices", path)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise InputError(str(path), f"expected a 1-D integer array, got {idx.dtype} {idx.shape}",
                         field="indices")
    idx = idx.astype(np.int64)
    if idx.size and (idx[0] <= 0 or idx[-1] >= n_acts or np.any(np.diff(idx) <= 0)):
        raise InputError(str(path), f"trajectory boundaries must increase strictly within "
                         f"1..{n_acts - 1}", field="indices")
    return idx


def _optional(path: Path, archive: Any, key: str, length: int) -> np.ndarray | None:
    if key not in archive.files:
        return None
    arr = _numeric(path, key, _member(archive, key, path), min_ndim=1)
    if arr.ndim != 1 or len(arr) != length:
        raise InputError(str(path), f"expected {length} values, got shape {arr.shape}", field=key)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(str(path), "holds NaN or infinite values", field=key)
    return arr


def _finite_obs(path: Path, obs: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """obs as float32, refusing NaN/inf (including overflow in the cast)."""
    with np.errstate(over="ignore", invalid="ignore"):
        obs32 = obs.astype(np.float32)
    _check_finite(path, "obs", obs32, bounds)
    return obs32


def _check_finite(path: Path, key: str, arr2d: np.ndarray, bounds: np.ndarray) -> None:
    if arr2d.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr2d).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        traj = int(np.searchsorted(bounds, row, side="right"))
        raise InputError(str(path), f"row {row} holds NaN or an infinite value (or one too large "
                         f"for float32)", record=traj, field=key)


# -- JSONL -----------------------------------------------------------------

def read_demos_jsonl(path: Path, progress: Progress) -> ReadResult:
    return ReadResult(_demo_rows(path, progress))


def _demo_rows(path: Path, progress: Progress) -> Iterator[Row]:
    widths: dict[str, int] = {}  # one width per field across the whole file
    for loc, index, rec in iter_jsonl_records(path, progress):
        yield _demo_row(rec, index, loc, widths)


def _demo_row(rec: dict, index: int, loc: Location, widths: dict[str, int]) -> Row:
    """One trajectory as an examples row carrying its ``obs`` and ``acts``."""
    obs, _, _ = _matrix(require(rec, "obs", loc), loc, "obs")
    _same_width(widths, "obs", obs, loc)
    acts, act_scalar, act_int = None, True, True
    if rec.get("acts") is not None:
        acts, act_scalar, act_int = _matrix(rec["acts"], loc, "acts", allow_empty=True)
        _same_width(widths, "acts", acts, loc)
        if len(acts) not in (len(obs) - 1, len(obs)):
            raise loc.error(f"has {len(acts)} actions for {len(obs)} observations; expected "
                            f"{len(obs) - 1} (or {len(obs)})", field="acts")
    with np.errstate(over="ignore", invalid="ignore"):
        obs32 = obs.astype(np.float32)
    if not np.isfinite(obs32).all():
        raise loc.error("a value is too large for float32", field="obs")
    meta: dict[str, Any] = {"act_scalar": act_scalar, "act_int": act_int}
    if type(rec.get("return")) in (int, float):  # what our own export writes
        meta["return"] = float(rec["return"])
    extra, _ = scalar_extras(rec, {"obs", "acts", "id", "return"})
    if extra:
        meta["extra"] = extra
    return {"source_index": index, "source_id": source_id_of(rec), "obs": obs32, "acts": acts,
            "n_steps": len(acts) if acts is not None else len(obs) - 1, "meta": meta}


def _matrix(value: Any, loc: Location, field: str,
            allow_empty: bool = False) -> tuple[np.ndarray, bool, bool]:
    """A list of numbers or of equal-length number lists as a 2-D float64
    array, plus (scalar rows?, all integers?)."""
    if not isinstance(value, list) or (not value and not allow_empty):
        raise loc.error(f"expected a non-empty list, got {type_name(value)}", field=field)
    if not value:
        return np.zeros((0, 0)), True, True
    scalar = not isinstance(value[0], list)
    width = 1 if scalar else len(value[0])
    all_int = True
    for step, item in enumerate(value):
        if scalar:
            if isinstance(item, list):
                raise loc.error(f"ragged: step {step} is a list, step 0 is a number", field=field)
            items = (item,)
        elif not isinstance(item, list):
            raise loc.error(f"step {step}: expected a list of numbers, got {type_name(item)}",
                            field=field)
        elif len(item) != width:
            raise loc.error(f"ragged: step {step} has {len(item)} values, step 0 has {width}",
                            field=field)
        else:
            items = item
        for v in items:
            kind = type(v)
            if kind is not int and kind is not float:
                raise loc.error(f"step {step}: expected numbers, got {type_name(v)}", field=field)
            all_int = all_int and kind is int
    return np.array(value, dtype=np.float64).reshape(len(value), width), scalar, all_int


def _same_width(widths: dict[str, int], field: str, arr: np.ndarray, loc: Location) -> None:
    if not len(arr):
        return
    width = widths.setdefault(field, arr.shape[1])
    if arr.shape[1] != width:
        raise loc.error(f"ragged: {arr.shape[1]} values per step, earlier trajectories have "
                        f"{width}", field=field)


def _suffix_sniffer(*suffixes: str):
    return lambda path: path.is_file() and has_suffix(path, *suffixes)


register_importer(Importer(
    "demos-jsonl", "demos", _suffix_sniffer(*JSONL_SUFFIXES), read_demos_jsonl,
    "trajectories JSONL, one per line: {obs: [[...]], acts: [...], id}"))
register_importer(Importer(
    "imitation-npz", "demos", _suffix_sniffer(".npz"), read_npz,
    "imitation rollouts .npz (obs, acts, indices, rews, terminal; infos never read)"))
