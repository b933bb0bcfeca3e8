"""Sharing a Docker volume with other Docker hosts. A host's key reaches only the Docker-backed groups it
created or holds (`VolumeGroup.objects.reachable_by`); an Admin may share one with other Docker hosts of its
cluster (a swarm whose services move between nodes), which lets their plugins list, mount and unmount it.
Removing it stays with the host that created it, or people in the console."""

from django.db import transaction

from console.core import audit
from console.core.access import ADMIN, has_role
from console.core.actors import Actor
from console.core.errors import Conflict, InvalidRequest

from ..models import DockerHost, VolumeGroup


def _check(actor: Actor, group: VolumeGroup, host: DockerHost) -> None:
    if not has_role(actor.user, ADMIN):
        raise Conflict({"docker_host": ["sharing a volume group with a Docker host needs the Admin role"]})
    if not group.docker_volume:
        raise InvalidRequest({"volume_group": [f"volume group {group.name} backs no Docker volume: attach it to "
                                               "a Docker host instead"]})
    if host.cluster_id != group.cluster_id:
        raise InvalidRequest({"docker_host": [f"Docker host {host.name} is in another cluster"]})


def share(actor: Actor, group: VolumeGroup, host: DockerHost) -> None:
    """Let `host`'s plugin use the group too. Safe to repeat."""
    _check(actor, group, host)
    if group.created_by_host_id == host.pk:
        raise InvalidRequest({"docker_host": [f"Docker host {host.name} created {group.docker_volume}: it has it"]})
    with transaction.atomic():
        group.shared_with.add(host)
        audit.record(actor, "volume-group.share", group, docker_host=host.name)


def unshare(actor: Actor, group: VolumeGroup, host: DockerHost) -> None:
    """Take the share back: the host's key no longer reaches the group, unless it holds it now (its containers
    may be writing); it loses it at its detach. Safe to repeat."""
    _check(actor, group, host)
    with transaction.atomic():
        group.shared_with.remove(host)
        audit.record(actor, "volume-group.unshare", group, docker_host=host.name)
