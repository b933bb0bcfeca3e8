"""Docker hosts: a VM created for the purpose, or a registered machine; each with a token of its own that the
volume plugin uses, which reaches the plugin's endpoints only."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.errors import Conflict, InvalidRequest, check_field
from console.core.models import Task
from console.models import VM, Cluster, Image, Network, StorageContainer
from console.models.inventory import name_validator
from console.services import vms
from customization.services import sealed
from customization.services.lifecycle import CustomizationRequest

from ..models import DockerHost, VolumeGroup, VolumeGroupAttachment
from . import docker_host_user_data

LAST_CONTACT_PRECISION = timedelta(seconds=30)
KEY_NAME = "docker_host_key"


def _new_host(actor: Actor, name: str, kind: str, **fields) -> tuple[DockerHost, str]:
    cluster = vms.default_cluster()
    check_field(name_validator, name, "name")
    key = DockerHost.generate_key()
    try:
        with transaction.atomic():
            host = DockerHost.objects.create(
                cluster=cluster, name=name, kind=kind, key_hash=DockerHost.hash(key), key_hint=key[:12],
                probe_nonce=secrets.token_hex(16), created_by=actor.user, **fields)
    except IntegrityError:
        raise Conflict({"name": [f"a Docker host named {name!r} already exists"]}) from None
    return host, key


def register(actor: Actor, name: str, address: str = "") -> tuple[DockerHost, str]:
    """Register an existing machine. It is ready once its plugin shows it reads the probe file written here
    into each storage container, i.e. that it sees the containers' directories. Returns the key, once."""
    host, key = _new_host(actor, name, DockerHost.Kind.EXTERNAL, address=address)
    for storage_container in host.cluster.storage_containers.all():
        probe = host.probe_file(storage_container)
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(host.probe_nonce)
    audit.record(actor, "docker-host.register", host, address=address)
    return host, key


def regenerate_key(actor: Actor, host: DockerHost) -> str:
    """A new key for the host; the old one stops working at once (only the new one's hash is kept). Returns
    the new key, once: the plugin's env file on the host needs it."""
    key = DockerHost.generate_key()
    DockerHost.objects.filter(pk=host.pk).update(key_hash=DockerHost.hash(key), key_hint=key[:12])
    host.key_hash, host.key_hint = DockerHost.hash(key), key[:12]
    audit.record(actor, "docker-host.key.regenerate", host)
    return key


def request_create(actor: Actor, *, name: str, image: Image, vcpus: int, memory_bytes: int,
                   network: Network | None = None) -> tuple[Task, DockerHost]:
    """A VM from the image, powered on, whose first boot runs the cloud-config that makes it a Docker host
    (through OS customization's media); answers the task creating the VM, and the host. Its NIC is on the
    network asked for, else on the cluster's first; the plugin reaches the console at GUEST_CONSOLE_URL."""
    vms.check_new_name(image.cluster, name)
    network = _network_to_the_console(image.cluster, network)
    with transaction.atomic():
        host, key = _new_host(actor, name, DockerHost.Kind.VM)
        # The key goes into the media alone: the stored content holds a placeholder (customization's sealed values).
        user_data = docker_host_user_data.render(host_name=name, console_url=settings.GUEST_CONSOLE_URL,
                                                 key=sealed.placeholder(KEY_NAME),
                                                 default_storage_container=image.storage_container.name)
        spec = vms.VMSpec(name=name, vcpus=vcpus, memory_bytes=memory_bytes, cluster=image.cluster, image=image,
                          nics=[vms.NicSpec(network=network)], power_on=True,
                          description=f"Docker host {name}", options={"customization": CustomizationRequest(
                              kind="cloud-init", content=user_data, sealed_values={KEY_NAME: key})})
        task = vms.request_create_vm(actor, spec)
        host.vm = VM.objects.get(uuid=task.entity_uuid)
        host.save(update_fields=["vm"])
        audit.record(actor, "docker-host.create", host, task=str(task.uuid))
    return task, host


def _network_to_the_console(cluster: Cluster, network: Network | None) -> Network:
    """A Docker host VM fetches the plugin from the console and its plugin calls it: without a NIC it never could."""
    network = network or cluster.networks.first()
    if network is None:
        raise InvalidRequest({"network": [f"cluster {cluster.name} has no network: a Docker host VM needs one to "
                                          "reach the console"]})
    return network


def remove(actor: Actor, host: DockerHost) -> Task | None:
    """Forget the host (its key stops working at once); a VM-backed host's VM is deleted too (the task)."""
    attached = VolumeGroupAttachment.objects.filter(docker_host=host).select_related("group")
    if attached.exists():
        names = ", ".join(a.group.name for a in attached[:5])
        raise Conflict({"docker_host": [f"volume groups are attached to Docker host {host.name} ({names}); "
                                        "detach them first"]})
    with transaction.atomic():
        task = vms.request_delete(actor, host.vm) if host.vm else None
        for storage_container in host.cluster.storage_containers.all():
            host.probe_file(storage_container).unlink(missing_ok=True)
        audit.record(actor, "docker-host.remove", host, task=str(task.uuid) if task else None)
        host.delete()
    return task


def authenticate(key: str) -> DockerHost | None:
    host = DockerHost.objects.select_related("cluster", "vm__host").filter(key_hash=DockerHost.hash(key)).first()
    if host is not None:
        now = timezone.now()
        if host.last_contact_at is None or now - host.last_contact_at > LAST_CONTACT_PRECISION:
            DockerHost.objects.filter(pk=host.pk).update(last_contact_at=now)
    return host


def storage_containers(host: DockerHost) -> list[dict]:
    """What the plugin needs to find disk files and the probe of each storage container."""
    return [{"uuid": str(c.uuid), "name": c.name, "path": c.path, "probe": str(host.probe_file(c))}
            for c in host.cluster.storage_containers.all()]


def hello(host: DockerHost, *, docker_version: str, plugin_version: str, probes: dict[str, str]) -> DockerHost:
    """The plugin starts: record its versions and, for a registered machine, which containers it sees."""
    host.docker_version, host.plugin_version = docker_version[:64], plugin_version[:64]
    host.last_contact_at = timezone.now()
    host.state, host.problem = DockerHost.State.READY, ""
    containers = list(host.cluster.storage_containers.all())
    if host.kind == DockerHost.Kind.EXTERNAL:
        seen = [c for c in containers if probes.get(str(c.uuid)) == host.probe_nonce]
        if not seen:
            host.state = DockerHost.State.REFUSED
            host.problem = ("the machine cannot see any storage container's directory ("
                            + ", ".join(f"{c.name} at {c.path}: {_probe_problem(probes.get(str(c.uuid)))}"
                                        for c in containers)
                            + "); mount them at the same paths (it attaches disk files by loop device)")
        host.storage_containers_seen.set(seen)
    host.save()
    if host.state == DockerHost.State.REFUSED:
        raise Conflict({"docker_host": [f"Docker host {host.name} refused: {host.problem}"]})
    return host


def report_usage(host: DockerHost, reports: list[dict]) -> list[VolumeGroup]:
    """What the host's plugin sees of its Docker volumes (`name`, `used_bytes`, `mounts`: the containers using
    each), for the pages. A report of a group not attached to this host changes nothing. Answers the groups
    reported among those the host's key reaches, from which the plugin learns their sizes (a disk
    grown in the console)."""
    names = [report["name"] for report in reports]
    reachable = VolumeGroup.objects.with_details().reachable_by(host)
    groups = {group.docker_volume: group for group in reachable.filter(docker_volume__in=names)}
    for report in reports:
        group = groups.get(report["name"])
        attachment = getattr(group, "attachment", None)
        if attachment is None or attachment.docker_host_id != host.pk:
            continue
        if (group.used_bytes, group.mounts) != (report["used_bytes"], report["mounts"]):
            group.used_bytes, group.mounts = report["used_bytes"], report["mounts"]
            VolumeGroup.objects.filter(pk=group.pk).update(used_bytes=group.used_bytes, mounts=group.mounts)
    return list(groups.values())


def _probe_problem(read: str | None) -> str:
    return "probe file not found" if not read else "probe file holds another host's value"


def storage_container_named(host: DockerHost, name: str) -> StorageContainer:
    storage_container = host.cluster.storage_containers.filter(name=name).first()
    if storage_container is None:
        known = ", ".join(host.cluster.storage_containers.values_list("name", flat=True))
        raise InvalidRequest({"container": [f"no storage container is named {name!r} (known: {known})"]})
    return storage_container
