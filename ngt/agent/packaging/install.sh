#!/bin/sh
# Facet Guest Tools installer, run from the tools ISO's installer/linux/: the .deb where dpkg is, the .rpm
# where rpm is, else the files copied in place. Without systemd, --foreground runs the agent in this shell.
#   install.sh [--foreground] [--root DIR]     (--root: copy the files under DIR, for images and tests)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
FOREGROUND=no
ROOT=
while [ $# -gt 0 ]; do
    case "$1" in
        --foreground) FOREGROUND=yes ;;
        --root) ROOT=$2; shift ;;
        *) echo "usage: $0 [--foreground] [--root DIR]" >&2; exit 2 ;;
    esac
    shift
done
command -v python3 >/dev/null 2>&1 || { echo "the agent needs python3 (3.9 or newer)" >&2; exit 1; }

if [ -z "$ROOT" ] && command -v dpkg >/dev/null 2>&1; then
    dpkg -i "$HERE"/facet-guest-tools_*_all.deb
elif [ -z "$ROOT" ] && command -v rpm >/dev/null 2>&1; then
    rpm -U --replacepkgs "$HERE"/facet-guest-tools-*.noarch.rpm
else
    mkdir -p "${ROOT:-/}"
    tar -xzf "$HERE"/facet-guest-tools-*.tar.gz -C "${ROOT:-/}"
    if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable --now facet-guest-tools.service
    fi
fi

if [ "$FOREGROUND" = yes ]; then
    PYTHONPATH="$ROOT/usr/lib/facet-guest-tools" exec python3 -m facet_guest_tools run
elif [ ! -d /run/systemd/system ]; then
    echo "installed; no systemd here: start the agent with $0 --foreground (or from your init system)"
fi
