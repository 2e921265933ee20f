#!/usr/bin/env bash
# The system libraries the workstation's window loads (Qt's xcb platform plugin,
# libQt6XcbQpa.so.6 and everything they pull in), each with its Debian package.
# dev-setup.sh installs the missing ones; install-offline.sh names them.
#
#   bash system-libs.sh check DIR     exit 1, naming libraries and packages, if any is missing
#   bash system-libs.sh missing DIR   the packages to install (one line; empty when none)
#   bash system-libs.sh derive DIR    the table below, measured on this machine
#   bash system-libs.sh linked DIR    each library ldd finds (or not) for the window
#   bash system-libs.sh table         the table below
# DIR is a venv, a site-packages folder or the one-folder application.
#
# How the table was derived: `derive` runs ldd on the files in WINDOW_FILES
# (PySide6-Essentials 6.11.3), keeps every library that resolves outside the
# PySide6 tree, and maps the file it resolves to to its package with `dpkg -S`;
# run on Debian 12 after installing the two that were missing there
# (libxcb-icccm4, libxcb-keysyms1). Re-derive after a PySide6 upgrade:
# tests/test_real_window.py fails when ldd lists a library the table lacks.
# Packages are looked up by library, not by name, because names differ across
# releases (Ubuntu 24.04 calls libglib2.0-0 libglib2.0-0t64): only libraries ldd
# cannot find are mapped to packages.
set -euo pipefail

# What the window loads, relative to the PySide6 folder. Left out on purpose:
# platformthemes/libqgtk3.so (Qt uses its own look when GTK 3 is absent), the
# wayland/eglfs/vnc platforms, SQL drivers and TLS backends (never loaded here).
WINDOW_FILES=(
  Qt/plugins/platforms/libqxcb.so
  Qt/lib/libQt6XcbQpa.so.6
  Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so
  Qt/plugins/xcbglintegrations/libqxcb-egl-integration.so
  Qt/plugins/platforminputcontexts/libcomposeplatforminputcontextplugin.so
  Qt/plugins/platforminputcontexts/libibusplatforminputcontextplugin.so
  Qt/plugins/platformthemes/libqxdgdesktopportal.so
  Qt/plugins/iconengines/libqsvgicon.so
  Qt/plugins/imageformats/libqsvg.so
  # the Python modules the window and pyqtgraph import
  QtCore.abi3.so QtGui.abi3.so QtWidgets.abi3.so QtSvg.abi3.so
  QtOpenGL.abi3.so QtOpenGLWidgets.abi3.so QtTest.abi3.so
)

TABLE="\
libEGL.so.1                libegl1
libGL.so.1                 libgl1
libGLX.so.0                libglx0
libGLdispatch.so.0         libglvnd0
libX11-xcb.so.1            libx11-xcb1
libX11.so.6                libx11-6
libXau.so.6                libxau6
libXdmcp.so.6              libxdmcp6
libbrotlicommon.so.1       libbrotli1
libbrotlidec.so.1          libbrotli1
libbsd.so.0                libbsd0
libc.so.6                  libc6
libcap.so.2                libcap2
libdbus-1.so.3             libdbus-1-3
libdl.so.2                 libc6
libexpat.so.1              libexpat1
libfontconfig.so.1         libfontconfig1
libfreetype.so.6           libfreetype6
libgcc_s.so.1              libgcc-s1
libgcrypt.so.20            libgcrypt20
libglib-2.0.so.0           libglib2.0-0
libgpg-error.so.0          libgpg-error0
libgthread-2.0.so.0        libglib2.0-0
liblz4.so.1                liblz4-1
liblzma.so.5               liblzma5
libm.so.6                  libc6
libmd.so.0                 libmd0
libpcre2-8.so.0            libpcre2-8-0
libpng16.so.16             libpng16-16
libpthread.so.0            libc6
libstdc++.so.6             libstdc++6
libsystemd.so.0            libsystemd0
libxcb-cursor.so.0         libxcb-cursor0
libxcb-glx.so.0            libxcb-glx0
libxcb-icccm.so.4          libxcb-icccm4
libxcb-image.so.0          libxcb-image0
libxcb-keysyms.so.1        libxcb-keysyms1
libxcb-randr.so.0          libxcb-randr0
libxcb-render-util.so.0    libxcb-render-util0
libxcb-render.so.0         libxcb-render0
libxcb-shape.so.0          libxcb-shape0
libxcb-shm.so.0            libxcb-shm0
libxcb-sync.so.1           libxcb-sync1
libxcb-util.so.1           libxcb-util1
libxcb-xfixes.so.0         libxcb-xfixes0
libxcb-xkb.so.1            libxcb-xkb1
libxcb.so.1                libxcb1
libxkbcommon-x11.so.0      libxkbcommon-x11-0
libxkbcommon.so.0          libxkbcommon0
libz.so.1                  zlib1g
libzstd.so.1               libzstd1
"

die() { echo "error: $*" >&2; exit 1; }

# The PySide6 folders under $1 (a venv holds one; so does the one-folder app).
pyside_dirs() {
  local hit found=0
  while IFS= read -r hit; do
    found=1
    echo "${hit%/Qt/plugins/platforms/libqxcb.so}"
  done < <(find "$1" -path '*/PySide6/Qt/plugins/platforms/libqxcb.so' 2>/dev/null)
  ((found)) || die "no PySide6 with Qt's xcb platform plugin under $1"
}

# "soname path" for every library the window files link, path "not-found" when
# ldd finds none; libraries inside PySide6 (or the app) are skipped.
linked() {
  local root="$1" dir rel file
  # The one-folder app's launcher puts its own folder on the library path.
  local libpath="${LD_LIBRARY_PATH:-}"
  [[ -d "$root/_internal" ]] && libpath="$(cd "$root/_internal" && pwd)${libpath:+:$libpath}"
  while IFS= read -r dir; do
    for rel in "${WINDOW_FILES[@]}"; do
      file="$dir/$rel"
      [[ -e "$file" ]] || continue  # an older PySide6 without this plugin
      LD_LIBRARY_PATH="$libpath" ldd "$file" 2>/dev/null
    done
  done <<<"$PYSIDE_DIRS" \
    | awk -v root="$(cd "$root" && pwd)" '
        $2 != "=>" { next }
        $3 == "not" { print $1, "not-found"; next }
        index($3, root) == 1 || $3 ~ /\/PySide6\// { next }
        { print $1, $3 }' \
    | sort -u
}

package_of() {  # the table's package for soname $1, or "?"
  awk -v s="$1" '$1 == s { print $2; found = 1; exit } END { if (!found) print "?" }' <<<"$TABLE"
}

missing_sonames() {
  linked "$1" | awk '$2 == "not-found" { print $1 }'
}

cmd_missing() {
  local so pkgs=()
  for so in $(missing_sonames "$1"); do pkgs+=("$(package_of "$so")"); done
  ((${#pkgs[@]})) || { echo; return 0; }
  printf '%s\n' "${pkgs[@]}" | grep -vx '?' | sort -u | tr '\n' ' ' | sed 's/ $//'
  echo
}

cmd_check() {
  local so sonames=() pkgs=() unknown=() found
  found="$(linked "$1")"
  for so in $(awk '$2 == "not-found" { print $1 }' <<<"$found"); do
    sonames+=("$so")
    case "$(package_of "$so")" in
      "?") unknown+=("$so") ;;
      *) pkgs+=("$(package_of "$so")") ;;
    esac
  done
  if ((${#sonames[@]} == 0)); then
    echo "system libraries: all $(wc -l <<<"$found") that Qt's xcb window loads are present"
    return 0
  fi
  {
    echo "error: the window cannot start: Qt's xcb platform plugin needs ${sonames[*]}, not found"
    if ((${#pkgs[@]})); then
      echo "  install (Debian/Ubuntu): apt-get install $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')"
    fi
    if ((${#unknown[@]})); then
      echo "  not in packaging/system-libs.sh's table (find the package with apt-file search): ${unknown[*]}"
    fi
  } >&2
  return 1
}

cmd_linked() { linked "$1"; }

cmd_derive() {
  local so path pkg
  while read -r so path; do
    if [[ "$path" == not-found ]]; then pkg="? (not installed here: apt-file search $so)"
    elif ! command -v dpkg >/dev/null; then pkg="? (no dpkg here)"
    else # merged /usr: dpkg knows some files by /lib, others by /usr/lib
         pkg="$(dpkg -S "$(realpath "$path")" 2>/dev/null | head -1 | cut -d: -f1 || true)"
         [[ -n "$pkg" ]] || pkg="$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1 || true)"
         [[ -n "$pkg" ]] || pkg="? (no package owns $path)"
    fi
    printf '%-26s %s\n' "$so" "$pkg"
  done < <(linked "$1")
}

case "${1:-}" in
  check|missing|derive|linked)
    [[ -n "${2:-}" && -d "$2" ]] || die "usage: bash system-libs.sh $1 DIR (a venv, site-packages or the app folder)"
    PYSIDE_DIRS="$(pyside_dirs "$2")" || exit 1
    "cmd_$1" "$2" ;;
  table) printf '%s' "$TABLE" ;;
  *) sed -n '2,11s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
