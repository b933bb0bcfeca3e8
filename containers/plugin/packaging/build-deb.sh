#!/bin/sh
# Build facet-volume-plugin_VERSION_all.deb (and a facet-volume-plugin.deb link to it) into OUTDIR.
#   containers/plugin/packaging/build-deb.sh OUTDIR
set -eu
mkdir -p "${1:?usage: build-deb.sh OUTDIR}"
out=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
version=$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$plugin/__init__.py")
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT

lib="$root/usr/lib/facet-volume-plugin"
mkdir -p "$lib/containers/plugin" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/share/doc/facet-volume-plugin" \
  "$root/DEBIAN"
: > "$lib/containers/__init__.py"  # the plugin alone, not the console app its directory belongs to
cp "$plugin"/*.py "$lib/containers/plugin/"
cat > "$root/usr/bin/facet-volume-plugin" <<'LAUNCHER'
#!/bin/sh
PYTHONPATH=/usr/lib/facet-volume-plugin exec python3 -m containers.plugin "$@"
LAUNCHER
chmod 0755 "$root/usr/bin/facet-volume-plugin"
cp "$here/facet-volume-plugin.service" "$root/lib/systemd/system/"
cp "$here/volume-plugin.env.example" "$root/usr/share/doc/facet-volume-plugin/"
cat > "$root/DEBIAN/control" <<CONTROL
Package: facet-volume-plugin
Version: $version
Architecture: all
Maintainer: Facet <facet@localhost>
Depends: python3 (>= 3.11), util-linux, mount, e2fsprogs
Recommends: xfsprogs, docker.io | docker-ce
Section: admin
Priority: optional
Description: Docker volume plugin backed by Facet volume groups
 Serves Docker's legacy volume plugin protocol on /run/docker/plugins/facet.sock and keeps
 volumes as Facet volume groups, attached to one host at a time. Configure
 /etc/facet/volume-plugin.env (see /usr/share/doc/facet-volume-plugin).
CONTROL
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
mkdir -p /etc/facet /var/lib/facet/volumes
chmod 0700 /etc/facet
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTINST
chmod 0755 "$root/DEBIAN/postinst"

package="$out/facet-volume-plugin_${version}_all.deb"
dpkg-deb --root-owner-group --build "$root" "$package" >/dev/null
ln -sf "$(basename "$package")" "$out/facet-volume-plugin.deb"
echo "$package"
