#!/bin/sh
# The one test that is not pure Python, napari's, needs an X server and Qt's xcb libraries (Debian packages).
# Installs them when Xvfb is missing; if that cannot be done, says so and lets the napari test fail with its reason.
command -v Xvfb >/dev/null 2>&1 && exit 0
packages="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libgl1-mesa-dri"
as_root=""
[ "$(id -u)" = 0 ] || as_root="sudo"
export DEBIAN_FRONTEND=noninteractive
$as_root apt-get install -y -q $packages >/dev/null 2>&1 \
  || { $as_root apt-get update -q >/dev/null 2>&1 && $as_root apt-get install -y -q $packages >/dev/null 2>&1; } \
  || echo "tests/system-packages.sh: could not install $packages; the napari test will fail" >&2
exit 0
