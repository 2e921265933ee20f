#!/usr/bin/env bash
# Build the one-folder application (PyInstaller, packaging/workstation.spec) and
# check that it starts: dist/workstation/workstation is the window and the CLI.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bash packaging/build-app.sh [--dist DIR] [--work DIR] [--archive]

  --dist DIR   where the app folder goes (default: dist; the app is DIR/workstation)
  --work DIR   PyInstaller's work folder (default: build/pyinstaller)
  --archive    also pack DIR/workstation-<version>-linux-<arch>.tar.gz

environment: PYTHON  the interpreter with the workstation and PyInstaller
             installed (default: .venv/bin/python); add PyInstaller with
             `$PYTHON -m pip install pyinstaller`.
The build takes several minutes and about 1.6 GB (torch is most of it).
USAGE
}

die() { echo "error: $*" >&2; exit 1; }

cd "$(dirname "$0")/.."
dist=dist
work=build/pyinstaller
archive=0
while (($#)); do
  case "$1" in
    --dist) dist="${2:?--dist needs a folder}"; shift 2 ;;
    --work) work="${2:?--work needs a folder}"; shift 2 ;;
    --archive) archive=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c "import PyInstaller" 2>/dev/null \
  || die "PyInstaller is not installed for $PY: run '$PY -m pip install pyinstaller'"
"$PY" -c "import workstation" 2>/dev/null || die "$PY cannot import the workstation"

started=$SECONDS
"$PY" -m PyInstaller packaging/workstation.spec --noconfirm --distpath "$dist" --workpath "$work"
app="$dist/workstation/workstation"
version="$(QT_QPA_PLATFORM=offscreen "$app" --version)" || die "the built app does not start: $app"
echo "built $version: $dist/workstation ($(du -sh "$dist/workstation" | cut -f1)) in $((SECONDS - started)) s"
if ((archive)); then
  tarball="$dist/workstation-${version#workstation }-linux-$(uname -m).tar.gz"
  tar -C "$dist" -czf "$tarball" workstation
  echo "archive: $tarball ($(du -sh "$tarball" | cut -f1))"
fi
