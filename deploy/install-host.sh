#!/bin/sh
# Install and start a Facet hypervisor host's services: its Celery worker (queues default,host.NAME) and its
# Guest Tools Service instance. Run as root on the host, after `facet host add name=NAME uri=...`, with Facet in
# /opt/facet (FACET_HOME) and the cluster's environment file in /etc/facet/facet.env. docs/production.md has
# the units this writes, and what the environment file must hold.
set -eu
name=${1:?usage: install-host.sh HOST-NAME}
home=${FACET_HOME:-/opt/facet}
units=/etc/systemd/system
[ -r /etc/facet/facet.env ] || { echo "/etc/facet/facet.env is missing: copy it from another Facet machine" >&2; exit 1; }
[ -x "$home/.venv/bin/python" ] || { echo "no virtualenv in $home/.venv: install Facet there first" >&2; exit 1; }
id facet >/dev/null 2>&1 || useradd --system --home-dir /var/lib/facet --create-home facet

cat > "$units/facet-worker@.service" <<UNIT
[Unit]
Description=Facet Celery worker for host %i
After=network-online.target
Wants=network-online.target

[Service]
User=facet
Group=facet
WorkingDirectory=$home
EnvironmentFile=/etc/facet/facet.env
ExecStart=$home/.venv/bin/celery -A console worker --loglevel INFO --pool threads --concurrency 4 -Q default,host.%i --hostname worker-%i@%%h --without-gossip --without-mingle
Restart=on-failure
TimeoutStopSec=300

[Install]
WantedBy=multi-user.target
UNIT

cat > "$units/facet-guest-tools@.service" <<UNIT
[Unit]
Description=Facet Guest Tools Service instance of host %i
After=network-online.target
Wants=network-online.target

[Service]
User=facet
Group=facet
SupplementaryGroups=libvirt-qemu
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW
WorkingDirectory=$home
EnvironmentFile=/etc/facet/facet.env
ExecStart=$home/.venv/bin/python manage.py guest_tools_service --host %i
ExecStopPost=$home/.venv/bin/python manage.py guest_tools_service --host %i --release-vip
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT

getent group libvirt-qemu >/dev/null || sed -i '/^SupplementaryGroups=/d' "$units/facet-guest-tools@.service"
systemctl daemon-reload
systemctl enable --now "facet-worker@$name" "facet-guest-tools@$name"
echo "host $name: facet-worker@$name and facet-guest-tools@$name started; its page shows their heartbeats"
