#!/usr/bin/env bash
# Set up a development/analyst install on a fresh Debian/Ubuntu machine: a
# virtualenv in .venv with the workstation and its pinned dependencies, the
# system libraries Qt's window needs (apt), and the one-time ONNX conversion of
# the encoder.
#   bash packaging/dev-setup.sh          # the application
#   bash packaging/dev-setup.sh --test   # plus what the tests need (Xvfb, xauth, ImageMagick)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
test_tools=0
[[ "${1:-}" == "--test" ]] && { extras="[test]"; test_tools=1; }

sudo_cmd=""
[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
apt_updated=0
apt_install() {  # apt_install [--no-install-recommends] PACKAGE...
  command -v apt-get >/dev/null \
    || { echo "error: no apt-get here; install the equivalents of: $*" >&2; exit 1; }
  local names=("$@")
  [[ "${names[0]}" == --* ]] && names=("${names[@]:1}")
  echo "installing system packages: ${names[*]}"
  if ((!apt_updated)); then $sudo_cmd apt-get update -qq; apt_updated=1; fi
  # env: sudo drops the caller's environment
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
not_installed() {  # the given packages that dpkg does not list as installed
  command -v dpkg-query >/dev/null || return 0
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  # Debian and Ubuntu ship venv's pip bootstrap in a package of its own.
  if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    apt_install "python$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
  fi
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: anything unpinned would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".${extras}"

# The window's system libraries: those that ldd cannot find for Qt's xcb
# platform plugin and what it loads, as packages (packaging/system-libs.sh has
# the table and how it was derived). Looked up by library, because package
# names differ between releases. fontconfig needs at least one font.
read -r -a libs <<<"$(bash packaging/system-libs.sh missing .venv)"
libs+=($(not_installed fonts-dejavu-core))
((${#libs[@]} == 0)) || apt_install "${libs[@]}"
if ((test_tools)); then  # tests/test_real_window.py: a real X server and screenshots of it
  tools=($(not_installed xvfb xauth imagemagick))
  ((${#tools[@]} == 0)) || apt_install --no-install-recommends "${tools[@]}"
fi
# Stops the setup, naming the packages, if the window still could not start.
bash packaging/system-libs.sh check .venv

.venv/bin/workstation encoder prepare
