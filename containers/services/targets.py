"""Where a volume group is attached: a VM, or a Docker host (through its own VM's hypervisor when it is one,
by loop device when it is a registered machine)."""

from dataclasses import dataclass

from console.core.errors import Conflict
from console.models import VM

from ..models import DockerHost, VolumeGroup, VolumeGroupAttachment

BUSY_VM_STATES = (VM.PowerState.CREATING, VM.PowerState.DELETING)


@dataclass(frozen=True)
class Target:
    """Where a group goes: a VM, or a Docker host (whose own VM gets the disks when it is one)."""

    vm: VM | None = None
    docker_host: DockerHost | None = None

    @classmethod
    def of(cls, attachment: VolumeGroupAttachment) -> "Target":
        return cls(vm=attachment.vm, docker_host=attachment.docker_host)

    @property
    def name(self) -> str:
        return f"Docker host {self.docker_host.name}" if self.docker_host else f"VM {self.vm.name}"

    @property
    def hypervisor_vm(self) -> VM | None:
        """The VM whose hypervisor attaches the disk files (none for a registered machine: it uses loop devices)."""
        return self.docker_host.vm if self.docker_host else self.vm

    @property
    def queue(self) -> str:
        vm = self.hypervisor_vm
        return vm.host.queue if vm is not None and vm.host else "default"

    def params(self) -> dict:
        return {"docker_host": str(self.docker_host.uuid)} if self.docker_host else {"vm": str(self.vm.uuid)}

    def lookup(self) -> dict:
        """The attachment fields naming this target, for a queryset filter."""
        return {"docker_host": self.docker_host} if self.docker_host else {"vm": self.vm}

    @classmethod
    def from_params(cls, params: dict | None) -> "Target | None":
        if not params:
            return None
        if "docker_host" in params:
            return cls(docker_host=DockerHost.objects.select_related("vm__host").get(uuid=params["docker_host"]))
        return cls(vm=VM.objects.select_related("host").get(uuid=params["vm"]))

    def check_can_take(self, group: VolumeGroup) -> None:
        """Refuse, saying why, a target that cannot take the group's disks now."""
        host = self.docker_host
        if host is not None:
            if host.state != DockerHost.State.READY:
                raise Conflict({"docker_host": [f"Docker host {host.name} is not ready ({host.get_state_display()})"
                                                + (f": {host.problem}" if host.problem else "")]})
            if (host.kind == DockerHost.Kind.EXTERNAL
                    and not host.storage_containers_seen.filter(pk=group.storage_container_id).exists()):
                raise Conflict({"docker_host": [
                    f"Docker host {host.name} cannot see storage container {group.storage_container.name} "
                    f"({group.storage_container.path}); it attaches disks by loop device over their files"]})
            if host.kind == DockerHost.Kind.VM and host.vm is None:
                raise Conflict({"docker_host": [f"the VM of Docker host {host.name} no longer exists"]})
        vm = self.hypervisor_vm
        if vm is not None:
            if vm.is_template:
                raise Conflict({"vm": [f"{vm.name} is a template"]})
            if vm.power_state in BUSY_VM_STATES:
                raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})

    def same_as(self, attachment: VolumeGroupAttachment) -> bool:
        if self.docker_host:
            return attachment.docker_host_id == self.docker_host.pk
        return attachment.vm_id == self.vm.pk
