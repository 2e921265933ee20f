#!/usr/bin/env bash
# Build an air-gapped wheelhouse of the workstation, on a connected machine.
#
# The folder it writes holds everything an offline install needs:
#   *.whl              the workstation's own wheel and every runtime dependency
#   requirements.lock  `name==version` pins with `--hash=sha256:` for each wheel
#   encoder/           the sentence encoder, already converted to ONNX
#   install-offline.sh, wheelhouse_tool.py, system-libs.sh, desktop/
#                      the installer, its helpers and the desktop files
#   wheelhouse.json, SHA256SUMS                       what it is, and every file's hash
# Copy the folder to the offline machine and run `bash install-offline.sh VENV` there.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash packaging/build-wheelhouse.sh [options]

Build a wheelhouse for an offline install of the workstation.

options:
  --out DIR              where to write it (default: dist/wheelhouse); must not exist
                         unless --force
  --python X.Y           target Python version (default: this machine's)
  --platform TAG         target platform tag, repeatable, e.g. manylinux_2_28_x86_64
                         (manylinux tags also accept older manylinux wheels; torch
                         2.13 needs manylinux_2_28 or newer). Default: this machine's
  --with-test            add the test extra (pytest, scikit-learn, ...)
  --from-wheelhouse DIR  take the dependencies from an earlier wheelhouse instead of
                         the network (rebuilds only the workstation wheel, the lock
                         and the manifest; fails if a dependency is missing there)
  --no-encoder           do not put the converted encoder in the wheelhouse (the
                         offline machine then converts it on first use)
  --pip-arg ARG          pass ARG to pip when it fetches dependencies, repeatable
                         (e.g. --pip-arg=--extra-index-url --pip-arg=URL of PyTorch's
                         CPU-only wheel index, where PyPI's torch would be a CUDA build)
  --allow-cuda           keep a CUDA build of torch (several GB) instead of failing
  --force                replace --out if it exists
  -h, --help             this text

environment: PYTHON  the interpreter that runs pip (default: .venv/bin/python if
             present, else python3); it also converts the encoder if needed.
Without --python/--platform the dependencies are fetched with `pip wheel` (which
can build a source-only dependency for this machine); with either, `pip download
--only-binary=:all:` fetches wheels for the target.
EOF
}

die() { echo "error: $*" >&2; exit 1; }
note() { echo "==> $*" >&2; }

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

out="dist/wheelhouse"
target_python=""
platforms=()
extras=""
from_wh=""
with_encoder=1
pip_args=()
allow_cuda=0
force=0
while (($#)); do
  case "$1" in
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --python) target_python="${2:?--python needs a version like 3.11}"; shift 2 ;;
    --python=*) target_python="${1#*=}"; shift ;;
    --platform) platforms+=("${2:?--platform needs a tag}"); shift 2 ;;
    --platform=*) platforms+=("${1#*=}"); shift ;;
    --with-test) extras="[test]"; shift ;;
    --from-wheelhouse) from_wh="${2:?--from-wheelhouse needs a folder}"; shift 2 ;;
    --from-wheelhouse=*) from_wh="${1#*=}"; shift ;;
    --no-encoder) with_encoder=0; shift ;;
    --pip-arg) pip_args+=("${2:?--pip-arg needs a value}"); shift 2 ;;
    --pip-arg=*) pip_args+=("${1#*=}"); shift ;;
    --allow-cuda) allow_cuda=1; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
command -v "$PY" >/dev/null || die "no Python interpreter '$PY' (set PYTHON=...)"
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip"
tool=("$PY" "$here/wheelhouse_tool.py")

native_python="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ -n "$target_python" ]] || target_python="$native_python"
[[ "$target_python" =~ ^3\.[0-9]+$ ]] || die "--python wants a version like 3.11, not '$target_python'"
[[ -z "$from_wh" || -f "$from_wh/requirements.lock" ]] \
  || die "--from-wheelhouse $from_wh: no requirements.lock there"

# manylinux_2_N_ARCH (or manylinux2014_ARCH, ...) -> itself and every older manylinux tag,
# since pip takes a --platform tag literally.
expand_platform() {
  local tag="$1" glibc arch k
  case "$tag" in
    manylinux2014_*) glibc=17; arch="${tag#manylinux2014_}" ;;
    manylinux2010_*) glibc=12; arch="${tag#manylinux2010_}" ;;
    manylinux1_*) glibc=5; arch="${tag#manylinux1_}" ;;
    manylinux_2_*) glibc="${tag#manylinux_2_}"; arch="${glibc#*_}"; glibc="${glibc%%_*}" ;;
    *) echo "$tag"; return ;;
  esac
  [[ "$glibc" =~ ^[0-9]+$ ]] || die "cannot read the glibc version in platform tag '$tag'"
  for ((k = glibc; k >= 5; k--)); do echo "manylinux_2_${k}_${arch}"; done
  ((glibc >= 17)) && echo "manylinux2014_${arch}"
  ((glibc >= 12)) && echo "manylinux2010_${arch}"
  echo "manylinux1_${arch}"
}

# This machine's platform tag, e.g. manylinux_2_36_x86_64 (empty if not glibc Linux).
glibc="$("$PY" -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION") or "")' 2>/dev/null || true)"
native_platform=""
[[ "$glibc" == glibc\ 2.* ]] && native_platform="manylinux_2_${glibc#glibc 2.}_$(uname -m)"
native=1
if [[ "$target_python" != "$native_python" || ${#platforms[@]} -gt 0 ]]; then
  native=0
  if ((${#platforms[@]} == 0)); then
    [[ -n "$native_platform" ]] || die "cannot tell this machine's platform tag; pass --platform"
    platforms=("$native_platform")
  fi
  platform_label="${platforms[*]}"
else
  platform_label="this machine: ${native_platform:-$(uname -sm)}"
fi

if [[ -e "$out" ]]; then
  ((force)) || die "$out exists; pass --force to replace it, or choose another --out"
fi
mkdir -p "$(dirname "$out")"
stage="$(mktemp -d "${out%/}.partial-XXXXXX")"
work="$(mktemp -d)"
cleanup() { rm -rf "$work" "$stage"; }
trap cleanup EXIT
started=$SECONDS

# -- 1. the workstation's own wheel, built from a copy so the checkout stays clean --
note "building the workstation wheel"
src="$work/src"
mkdir -p "$src" "$work/own"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked-but-not-ignored files, as `pip wheel .` would see them.
  git -C "$repo" ls-files -z -co --exclude-standard -- pyproject.toml README.md 'LICENSE*' \
      setup.py setup.cfg MANIFEST.in workstation resources \
    | (cd "$repo" && xargs -0 -r sh -c 'for f; do if [ -f "$f" ]; then printf "%s\0" "$f"; fi; done' _) \
    | tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
else
  for f in pyproject.toml README.md LICENSE* setup.py setup.cfg MANIFEST.in workstation resources; do
    [[ -e "$f" ]] && cp -r "$f" "$src/"
  done
fi
"$PY" -m pip wheel -q --no-deps -w "$work/own" "$src" || die "building the workstation wheel failed"
own_wheel="$(ls "$work/own"/workstation-*.whl)"

# -- 2. every dependency, pinned by what the resolver picks --------------------
fetch=()
if ((native)); then
  note "fetching dependencies for this machine (Python $target_python)"
  fetch=(wheel -w "$stage" --prefer-binary)
else
  note "fetching wheels for Python $target_python on ${platforms[*]}"
  abi="cp${target_python/./}"
  fetch=(download -d "$stage" --only-binary=:all: --implementation cp
         --python-version "$target_python" --abi "$abi" --abi abi3 --abi none)
  for p in "${platforms[@]}"; do
    while read -r tag; do fetch+=(--platform "$tag"); done < <(expand_platform "$p")
  done
fi
if [[ -n "$from_wh" ]]; then
  # Only the earlier wheelhouse: no index, no find-links or constraints from pip's config.
  fetch+=(--no-index --find-links "$(cd "$from_wh" && pwd)")
  env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
      PIP_CONFIG_FILE=/dev/null "$PY" -m pip "${fetch[@]}" "${pip_args[@]}" "${own_wheel}${extras}" \
    || die "$from_wh lacks a dependency of this tree; build without --from-wheelhouse"
else
  "$PY" -m pip "${fetch[@]}" "${pip_args[@]}" "${own_wheel}${extras}" \
    || die "pip could not fetch the dependencies (see above)"
fi
[[ -f "$stage/$(basename "$own_wheel")" ]] || cp "$own_wheel" "$stage/"

cuda="$("${tool[@]}" cuda "$stage")"
if [[ -n "$cuda" && $allow_cuda -eq 0 ]]; then
  die "torch resolved to a CUDA build (it pulled in: $(echo "$cuda" | tr '\n' ' '))." \
      "Give pip a CPU-only torch 2.13.0 (--pip-arg=--find-links --pip-arg=DIR, or PyTorch's" \
      "CPU wheel index via --pip-arg=--extra-index-url), or pass --allow-cuda"
fi
"${tool[@]}" lock "$stage" >&2

# -- 3. the encoder, converted once here -----------------------------------------
if ((with_encoder)); then
  stem="$("${tool[@]}" encoder-stem "$stage")"
  mkdir -p "$stage/encoder"
  user_cache="${WORKSTATION_CACHE:-$HOME/.cache/workstation}/encoders"
  found=""
  for candidate in ${from_wh:+"$from_wh/encoder"} "$user_cache"; do
    if "${tool[@]}" encoder-ok "$candidate" "$stem"; then found="$candidate"; break; fi
  done
  if [[ -z "$found" ]] && "$PY" -c "import workstation.encoder, torch, transformers" 2>/dev/null; then
    note "converting the encoder with $PY"
    WORKSTATION_CACHE="$work/enc" "$PY" -m workstation encoder prepare >&2 \
      && "${tool[@]}" encoder-ok "$work/enc/encoders" "$stem" && found="$work/enc/encoders"
  fi
  if [[ -z "$found" ]] && ((native)); then
    note "converting the encoder in a throwaway venv installed from the wheelhouse"
    "$PY" -m venv "$work/venv"
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        PIP_CONFIG_FILE=/dev/null "$work/venv/bin/python" -m pip install -q --no-index \
        --find-links "$stage" --require-hashes -r "$stage/requirements.lock"
    WORKSTATION_CACHE="$work/enc" "$work/venv/bin/workstation" encoder prepare >&2 \
      && "${tool[@]}" encoder-ok "$work/enc/encoders" "$stem" && found="$work/enc/encoders"
  fi
  [[ -n "$found" ]] || die "could not convert the encoder ($stem) for this target: run the" \
    "build on a machine of the target's kind, give a PYTHON with the workstation installed," \
    "or pass --no-encoder"
  note "encoder: $stem (from $found)"
  cp "$found/$stem.onnx" "$found/$stem.json" "$stage/encoder/"
fi

# -- 4. the installer, desktop files, manifest -------------------------------------
cp "$here/install-offline.sh" "$here/wheelhouse_tool.py" "$here/system-libs.sh" "$stage/"
mkdir -p "$stage/desktop"
cp "$here/workstation.desktop" "$here/workstation-launcher" "$repo/resources/icons/workstation.svg" \
   "$stage/desktop/"
chmod +x "$stage/install-offline.sh" "$stage/desktop/workstation-launcher"
"${tool[@]}" manifest "$stage" "python=$target_python" \
  "platforms=$(IFS=,; echo "${platforms[*]:-$native_platform}")" "extras=${extras:-none}" \
  "built_on=$(uname -sm) Python $native_python" >/dev/null

if [[ -e "$out" ]]; then rm -rf "$out"; fi
mv "$stage" "$out"
chmod 755 "$out"
trap 'rm -rf "$work"' EXIT
bytes="$("${tool[@]}" size "$out")"
n_wheels="$(find "$out" -maxdepth 1 -name '*.whl' | wc -l)"
echo "wheelhouse: $out ($n_wheels wheels, $((bytes / 1048576)) MiB," \
     "Python $target_python, $platform_label) in $((SECONDS - started)) s"
