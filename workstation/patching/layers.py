"""Which patches a model version carries, read from the manifests.

A patched version is rebuilt from its unpatched root every time: its graph is
the root's graph plus the kernels of every active patch, in the order they
were applied. The manifest keys that say so (written by ``manifest_extras``):

* ``patches``: the ids of the active patches, oldest first (governance
  batches list them);
* ``patch_root``: "NAME@V" of the unpatched version the graph is built from;
* ``patch_layer``: ``rule`` ("bounded"/"unbounded", fixed by the first patch
  on a root so stacked patches agree) and ``columns``, the [patch id, kernel
  index] of each column of the ``kernel_activations`` output;
* ``patch`` (on the version a patch created): the patch record, with its
  kernels (center, bandwidth, strength, source), budget, protected loss,
  rule, scale, refusals and who made it; ``unpatch`` (on a version made by
  removing one): which patch was removed and by whom.

A patch's record lives only on the version that created it; later versions
name it by id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workstation.errors import WorkstationError
from workstation.hashing import json_default
from workstation.models.registry import ModelVersion, get_version, resolve
from workstation.patching.kernels import SuppressionKernel
from workstation.workspace import Workspace


@dataclass
class PatchLayer:
    """The active patches of ``version`` and the root they sit on."""

    version: ModelVersion
    root: ModelVersion
    records: list[dict[str, Any]]
    rule: str | None

    @property
    def patch_ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def kernels(self) -> list[SuppressionKernel]:
        """Every active kernel, in graph column order."""
        return [SuppressionKernel.from_json(k, r["scale"], r["id"])
                for r in self.records for k in r["kernels"]]


def current_layer(ws: Workspace, version: ModelVersion) -> PatchLayer:
    """The patches ``version`` carries (none for an unpatched version)."""
    manifest = version.manifest
    root_ref = manifest.get("patch_root")
    root = resolve(ws, root_ref) if root_ref else version
    records = [get_patch(ws, pid) for pid in manifest.get("patches") or []]
    layer = manifest.get("patch_layer") or {}
    return PatchLayer(version, root, records, layer.get("rule"))


def get_patch(ws: Workspace, patch_id: str) -> dict[str, Any]:
    """A patch's record, plus ``created_in`` ("NAME@V" of the version it made)."""
    rows = ws.execute("SELECT id FROM model_versions WHERE "
                      "json_extract_string(manifest, '$.patch.id') = ?", [patch_id]).fetchall()
    if not rows:
        raise WorkstationError(f"no patch with id '{patch_id}'")
    version = get_version(ws, int(rows[0][0]))
    return {**version.manifest["patch"], "created_in": version.ref}


def manifest_extras(root: ModelVersion, records: list[dict[str, Any]],
                    rule: str | None) -> dict[str, Any]:
    """The manifest keys every patched (or unpatched-again) version carries."""
    columns = [[r["id"], i] for r in records for i in range(len(r["kernels"]))]
    return {"patches": [r["id"] for r in records], "patch_root": root.ref,
            "patch_layer": {"rule": rule, "columns": columns}}


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """A patch record without the kernel centers (for listings)."""
    kernels = [{k: v for k, v in item.items() if k != "center"} for item in record["kernels"]]
    return {**{k: v for k, v in record.items() if k != "kernels"}, "kernels": kernels,
            "n_kernels": len(kernels)}


def plain(value: Any) -> Any:
    """``value`` as plain JSON (numpy numbers become Python numbers)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (np.ndarray, np.generic)):
        return json_default(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
