"""Where a volume group is attached: a VM, or a Docker host (through its own VM's hypervisor when it is one,
by loop device when it is a registered machine)."""

from dataclasses import dataclass

from console.models import VM

from ..models import DockerHost, VolumeGroupAttachment


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

    def same_as(self, attachment: VolumeGroupAttachment) -> bool:
        if self.docker_host:
            return attachment.docker_host_id == self.docker_host.pk
        return attachment.vm_id == self.vm.pk
