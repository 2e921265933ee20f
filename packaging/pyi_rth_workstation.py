"""PyInstaller runtime hook: hand the bundled, pre-converted encoder to the cache.

The workstation looks for its converted sentence encoder in
``$WORKSTATION_CACHE/encoders`` (default ``~/.cache/workstation/encoders``).
The one-folder build carries one in ``workstation_encoder/``; copying it there
on the first start spares the machine the conversion. Any failure leaves the
usual path: convert on first use.
"""

import os
import shutil
import sys
from pathlib import Path


def _install_bundled_encoder() -> None:
    bundled = Path(getattr(sys, "_MEIPASS", "")) / "workstation_encoder"
    if not bundled.is_dir():
        return
    root = os.environ.get("WORKSTATION_CACHE")
    target = (Path(root) if root else Path.home() / ".cache" / "workstation") / "encoders"
    for onnx in bundled.glob("*.onnx"):
        record = onnx.with_suffix(".json")
        if not record.is_file() or ((target / onnx.name).is_file()
                                    and (target / record.name).is_file()):
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            # The ONNX file first, the record last: the record marks it complete.
            for src in (onnx, record):
                tmp = target / f".{src.name}.tmp-{os.getpid()}"
                shutil.copyfile(src, tmp)
                os.replace(tmp, target / src.name)
        except OSError:
            pass


_install_bundled_encoder()
