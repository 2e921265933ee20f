#!/usr/bin/env bash
# Build the one-folder application (PyInstaller, packaging/workstation.spec), then
# smoke-test it with what a user runs first (--version, demo --no-gui, an audit,
# verify, a signed PDF report and verify-report): any failure fails the build. dist/workstation/workstation is the
# window and the CLI.
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
The build takes several minutes and about 1.6 GB (torch is most of it); the
smoke test after it about a minute more.
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
# The target machine checks its system libraries with the same script.
cp packaging/system-libs.sh "$dist/workstation/"
built=$((SECONDS - started))
echo "built $dist/workstation ($(du -sh "$dist/workstation" | cut -f1)) in ${built} s"

# -- smoke test: what a user runs first, as a user on a new machine would ----------
# A fresh home and cache (the bundled encoder must serve, not the builder's
# cache), no network where a namespace without one can be made, and no
# PYTHONPATH: a module the spec misses fails here, not for the user.
smoke="$(mktemp -d)"
trap 'rm -rf "$smoke"' EXIT
netns=()
for prefix in "unshare -n" "unshare -rn"; do
  if $prefix true 2>/dev/null; then read -r -a netns <<<"$prefix"; break; fi
done
run_app() {  # run_app NAME ARGS...: the built app, its output kept as $smoke/NAME.*
  local name="$1"; shift
  if ! env -u PYTHONPATH -u PYTHONHOME -u WORKSTATION_WORKSPACE HOME="$smoke/home" \
       WORKSTATION_CACHE="$smoke/cache" WORKSTATION_SETTINGS="$smoke/settings.ini" \
       QT_QPA_PLATFORM=offscreen \
       "${netns[@]}" "$app" "$@" >"$smoke/$name.out" 2>"$smoke/$name.err"; then
    echo "--- $app $* (its last output):" >&2
    tail -n 15 "$smoke/$name.err" >&2
    die "smoke test failed: the built app's '$name' exits non-zero (above); a user's" \
        "first '$name' would fail the same way"
  fi
}
field() {  # field NAME EXPR: EXPR of the JSON the smoke step NAME printed
  "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
    "$smoke/$1.out" "$2"
}
mkdir -p "$smoke/home"
ws="$smoke/first.duckdb"
run_app version --version
version="$(cat "$smoke/version.out")"
run_app demo --workspace "$ws" --json demo --no-gui
run_app audit --workspace "$ws" --json audit --model demo-rm --dataset demo-pairs
run_app verify --workspace "$ws" --json verify
[[ "$(field verify 'd["ok"]')" == True ]] || die "smoke test failed: 'verify' did not report ok"
run_app report --workspace "$ws" --json report --model demo-rm "$smoke/report.pdf"
run_app verify_report --json verify-report "$smoke/report.pdf"
[[ "$(field verify_report 'd["ok"]')" == True ]] \
  || die "smoke test failed: 'verify-report' did not report ok"
bash packaging/system-libs.sh check "$dist/workstation" >/dev/null \
  || die "smoke test failed: the app's Qt window would not find its libraries (above)"
echo "smoke test passed${netns[*]:+ (without network: ${netns[*]})}: $version;" \
     "demo --no-gui: models $(field demo '", ".join(d["models"])');" \
     "audit: run $(field audit 'd["run_id"]'), pairwise accuracy" \
     "$(field audit 'round(d["metrics"]["pairwise_accuracy"], 3)'); verify ok;" \
     "report: $(field report 'd["pages"]') PDF pages, signed and verified;" \
     "system libraries present; in $((SECONDS - started - built)) s"

if ((archive)); then
  tarball="$dist/workstation-${version#workstation }-linux-$(uname -m).tar.gz"
  tar -C "$dist" -czf "$tarball" workstation
  echo "archive: $tarball ($(du -sh "$tarball" | cut -f1))"
fi
