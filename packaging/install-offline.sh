#!/usr/bin/env bash
# Install the workstation on a machine without network, from a wheelhouse made by
# build-wheelhouse.sh. pip only ever looks inside the wheelhouse, and every wheel
# must match the hash pinned in its requirements.lock.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash install-offline.sh [options] VENV

Install the workstation from a wheelhouse into the virtualenv VENV (created if
missing), place the pre-converted sentence encoder in the workstation's cache,
and check that `workstation --version` runs.

options:
  --wheelhouse DIR  the wheelhouse (default: the folder this script is in, when it
                    holds a requirements.lock)
  --python PY       the interpreter to make the venv with (default: pythonX.Y as
                    the wheelhouse was built for, else python3)
  --cache DIR       the workstation cache (default: $WORKSTATION_CACHE, else
                    ~/.cache/workstation); the encoder goes to DIR/encoders. A
                    non-default DIR must be set as WORKSTATION_CACHE when running
                    (the --desktop launcher does that)
  --desktop         also install a launcher (~/.local/bin/workstation-launcher), a
                    menu entry and the icon for this user
  --no-checksums    skip checking the wheelhouse against its SHA256SUMS (pip still
                    checks every wheel's hash)
  -h, --help        this text
EOF
}

die() { echo "error: $*" >&2; exit 1; }
note() { echo "==> $*" >&2; }

here="$(cd "$(dirname "$0")" && pwd)"
wh=""
venv=""
py=""
cache="${WORKSTATION_CACHE:-}"
cache_given=0
desktop=0
checksums=1
while (($#)); do
  case "$1" in
    --wheelhouse) wh="${2:?--wheelhouse needs a folder}"; shift 2 ;;
    --wheelhouse=*) wh="${1#*=}"; shift ;;
    --python) py="${2:?--python needs an interpreter}"; shift 2 ;;
    --python=*) py="${1#*=}"; shift ;;
    --cache) cache="${2:?--cache needs a folder}"; cache_given=1; shift 2 ;;
    --cache=*) cache="${1#*=}"; cache_given=1; shift ;;
    --desktop) desktop=1; shift ;;
    --no-checksums) checksums=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$venv" ]] || { usage >&2; die "one VENV only (got '$venv' and '$1')"; }
       venv="$1"; shift ;;
  esac
done
[[ -n "$venv" ]] || { usage >&2; die "give the virtualenv to install into (VENV)"; }
if [[ -z "$wh" ]]; then
  [[ -f "$here/requirements.lock" ]] \
    || die "no --wheelhouse given and $here holds no requirements.lock"
  wh="$here"
fi
[[ -d "$wh" ]] || die "wheelhouse not found: $wh"
wh="$(cd "$wh" && pwd)"
[[ -f "$wh/requirements.lock" ]] || die "$wh has no requirements.lock; build it with build-wheelhouse.sh"
tool="$wh/wheelhouse_tool.py"
[[ -f "$tool" ]] || tool="$here/wheelhouse_tool.py"
[[ -f "$tool" ]] || die "wheelhouse_tool.py is missing beside this script and in $wh"

# The wheelhouse's Python version, from its wheelhouse.json (no JSON tool needed).
want="$(sed -n 's/.*"python": *"\([0-9.]*\)".*/\1/p' "$wh/wheelhouse.json" 2>/dev/null | head -1)"
if [[ -z "$py" ]]; then
  if [[ -x "$venv/bin/python" ]]; then py="$venv/bin/python"
  elif [[ -n "$want" ]] && command -v "python$want" >/dev/null; then py="python$want"
  else py=python3; fi
fi
command -v "$py" >/dev/null || die "no Python interpreter '$py'; pass --python PATH (Python ${want:-3.11})"
have="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ -z "$want" || "$have" == "$want" ]] \
  || die "the wheelhouse is for Python $want but $py is Python $have; pass --python" \
         "with a Python $want interpreter (or build a wheelhouse with --python $have)"

started=$SECONDS
if ((checksums)); then
  note "checking the wheelhouse against SHA256SUMS"
  "$py" "$tool" verify "$wh" >&2
fi

if [[ ! -x "$venv/bin/python" ]]; then
  note "creating the virtualenv $venv"
  "$py" -m venv "$venv" || die "could not create a venv with $py (on Debian/Ubuntu: apt" \
                              "install python${have}-venv)"
fi

note "installing from $wh (no index, hashes required)"
# Nothing but the wheelhouse: no index, and no find-links, extra index or
# constraints from pip's configuration files or environment.
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
    -u PIP_REQUIREMENT -u PIP_REQUIRE_VIRTUALENV \
    PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$venv/bin/python" -m pip install --no-index --find-links "$wh" --only-binary=:all: \
    --require-hashes -r "$wh/requirements.lock" \
  || die "pip could not install from the wheelhouse (see above)"
installed=$((SECONDS - started))

cache_root="${cache:-$HOME/.cache/workstation}"
cache_root="$(mkdir -p "$cache_root" && cd "$cache_root" && pwd)"
encoder_note="no pre-converted encoder in the wheelhouse: it is converted on first use"
if compgen -G "$wh/encoder/*.onnx" >/dev/null; then
  mkdir -p "$cache_root/encoders"
  for onnx in "$wh"/encoder/*.onnx; do
    stem="$(basename "$onnx" .onnx)"
    if "$py" "$tool" encoder-ok "$cache_root/encoders" "$stem"; then continue; fi
    # The ONNX file first, its record last: the record marks the file complete.
    cp "$onnx" "$cache_root/encoders/.$stem.onnx.tmp"
    mv -f "$cache_root/encoders/.$stem.onnx.tmp" "$cache_root/encoders/$stem.onnx"
    cp "$wh/encoder/$stem.json" "$cache_root/encoders/.$stem.json.tmp"
    mv -f "$cache_root/encoders/.$stem.json.tmp" "$cache_root/encoders/$stem.json"
  done
  # The installed workstation must find it without converting anything.
  found="$(WORKSTATION_CACHE="$cache_root" "$venv/bin/python" -c \
    'from workstation.encoder import _cached_onnx, source_sha256; print(_cached_onnx(source_sha256()) or "")')"
  [[ -n "$found" ]] || die "the installed workstation does not accept the encoder in" \
                          "$cache_root/encoders (was the wheelhouse built from another tree?)"
  encoder_note="encoder ready: $found"
fi
note "$encoder_note"

if ((desktop)); then
  bin_dir="$HOME/.local/bin"
  data="${XDG_DATA_HOME:-$HOME/.local/share}"
  mkdir -p "$bin_dir" "$data/applications" "$data/icons/hicolor/scalable/apps"
  venv_abs="$(cd "$venv" && pwd)"
  launcher="$bin_dir/workstation-launcher"
  sed -e "s|__WORKSTATION_VENV__|$venv_abs|" -e "s|__WORKSTATION_CACHE__|$cache_root|" \
      "$wh/desktop/workstation-launcher" > "$launcher"
  chmod 755 "$launcher"
  sed -e "s|^Exec=workstation-launcher|Exec=$launcher|" \
      "$wh/desktop/workstation.desktop" > "$data/applications/workstation.desktop"
  cp "$wh/desktop/workstation.svg" "$data/icons/hicolor/scalable/apps/workstation.svg"
  if command -v update-desktop-database >/dev/null; then
    update-desktop-database -q "$data/applications" 2>/dev/null || true
  fi
  note "desktop entry installed: $data/applications/workstation.desktop -> $launcher"
fi

# The window needs the system libraries Qt's xcb plugin loads (the CLI does not):
# name the packages of any that are missing; they cannot be fetched from here.
libs_tool="$wh/system-libs.sh"
[[ -f "$libs_tool" ]] || libs_tool="$here/system-libs.sh"
if [[ ! -f "$libs_tool" ]]; then
  echo "warning: system-libs.sh is missing beside this script and in $wh: the window's" \
       "system libraries were not checked" >&2
elif libs_report="$(bash "$libs_tool" check "$venv" 2>&1)"; then
  note "$libs_report"
else
  echo "warning: the CLI works, but the window will not start until these are installed" \
       "(from the OS media or a local mirror):" >&2
  echo "${libs_report#error: }" >&2
fi

version="$("$venv/bin/workstation" --version)" || die "$venv/bin/workstation --version failed"
echo "installed $version into $venv in ${installed} s (checks included: $((SECONDS - started)) s)"
if ((cache_given)) && [[ "$cache_root" != "${WORKSTATION_CACHE:-$HOME/.cache/workstation}" ]]; then
  echo "note: run it with WORKSTATION_CACHE=$cache_root so that it finds the encoder" \
       "(the --desktop launcher sets it)"
fi
