"""The volume driver: what each Docker request does, with the console (volume groups, attachments) on one
side and this machine's devices and mounts on the other.

Mounts are counted per caller id (Docker gives each container's use of a volume its own id): the first Mount
attaches and mounts, the last Unmount unmounts and detaches. The state file is written before every step
that a crash could interrupt, and `reconcile` finishes or undoes such a step on start."""

import logging
import threading
from pathlib import Path

from . import devices, protocol
from .config import Config
from .facet_api import ConsoleError, Deadline, FacetApi
from .state import Mounted, State, boot_id

log = logging.getLogger("facet-volume-plugin")


class VolumeDriver:
    def __init__(self, config: Config, api: FacetApi) -> None:
        self.config = config
        self.api = api
        self.state = State.load(config.state_file)
        self._state_lock = threading.Lock()
        self._volume_locks: dict[str, threading.Lock] = {}

    def handle(self, endpoint: str, request: dict) -> dict:
        """Answer one checked request (see protocol.ENDPOINTS)."""
        name = request.get("Name", "")
        if endpoint == "/Plugin.Activate":
            return {"Implements": ["VolumeDriver"]}
        if endpoint == "/VolumeDriver.Capabilities":
            return {"Capabilities": {"Scope": "global"}}  # one console: every host sees every volume
        if endpoint == "/VolumeDriver.List":
            return {"Volumes": [self._describe(v) for v in self.api.call("GET", "volumes/", self._deadline())]}
        if endpoint == "/VolumeDriver.Get":
            return {"Volume": self._describe(self.api.call("GET", f"volumes/{name}/", self._deadline()))}
        if endpoint == "/VolumeDriver.Path":
            mounted = self.state.volumes.get(name)
            return {"Mountpoint": mounted.mountpoint if mounted else ""}
        if endpoint == "/VolumeDriver.Create":
            self.create(name, protocol.create_options(request.get("Opts"), self.config.default_container))
            return {}
        with self._volume_locks.setdefault(name, threading.Lock()):  # setdefault: one lock per name, even racing
            if endpoint == "/VolumeDriver.Remove":
                self.remove(name)
                return {}
            if endpoint == "/VolumeDriver.Mount":
                return {"Mountpoint": self.mount(name, request["ID"])}
            self.unmount(name, request["ID"])
            return {}

    def _deadline(self) -> Deadline:
        return Deadline(self.config.call_seconds)

    def _save(self, name: str = "", mounted: Mounted | None = None, drop: bool = False) -> None:
        """Write the state file, after putting or dropping one volume's entry. One lock around both, since
        requests for other volumes change the same state from their own threads."""
        with self._state_lock:
            if drop:
                self.state.volumes.pop(name, None)
            elif mounted is not None:
                self.state.volumes[name] = mounted
            self.state.save(self.config.state_file)

    def _describe(self, volume: dict) -> dict:
        mounted = self.state.volumes.get(volume["name"])
        return protocol.volume(volume["name"], mounted.mountpoint if mounted else "", {
            "size": volume["size_bytes"], "fstype": volume["fstype"], "container": volume["container"],
            "attachedTo": volume["attached_to"] or ""})

    def create(self, name: str, options: protocol.CreateOptions) -> None:
        self.api.change("POST", "volumes/", self._deadline(), {
            "name": name, "size_bytes": options.size_bytes, "fstype": options.fstype,
            "container": options.container})

    def remove(self, name: str) -> None:
        mounted = self.state.volumes.get(name)
        if mounted is not None and mounted.callers:
            raise ConsoleError(f"volume {name} is mounted here by {len(mounted.callers)} container(s)")
        if mounted is not None:
            self._release(name, mounted)  # a release that failed half-way (the console was down) ends now
        self.api.change("DELETE", f"volumes/{name}/", self._deadline())

    def mount(self, name: str, caller: str) -> str:
        mounted = self.state.volumes.get(name)
        if mounted is None or not mounted.callers:  # no entry, or one whose release failed half-way
            mounted = self._attach_and_mount(name)
        if caller not in mounted.callers:
            mounted.callers.append(caller)
            self._save()
        self._report(name, mounted)
        return mounted.mountpoint

    def _attach_and_mount(self, name: str) -> Mounted:
        deadline = self._deadline()
        self.api.change("POST", f"volumes/{name}/attach/", deadline)
        volume = self.api.call("GET", f"volumes/{name}/", deadline)
        disk = volume["devices"][0]
        mounted = Mounted(device="", mountpoint=str(self.config.volumes_root / name), disk=disk["path"],
                          loop=disk["loop"], fstype=volume["fstype"] or "ext4")
        try:
            mounted.device = self._device(mounted)
            self._save(name, mounted)  # written before the mount: a crash now is undone on start
            if not devices.filesystem_of(mounted.device):
                devices.make_filesystem(mounted.device, mounted.fstype, name)
            devices.mount(mounted.device, Path(mounted.mountpoint))
        except devices.DeviceError:
            self._release(name, mounted)
            raise
        return mounted

    def _device(self, mounted: Mounted) -> str:
        if mounted.loop:
            return devices.attach_loop(Path(mounted.disk))
        return devices.wait_for_disk(Path(mounted.disk))

    def unmount(self, name: str, caller: str) -> None:
        mounted = self.state.volumes.get(name)
        if mounted is None:
            return  # already released (Docker may repeat an Unmount after our restart)
        if caller in mounted.callers:
            mounted.callers.remove(caller)
        self._save()
        if mounted.callers:
            self._report(name, mounted)
            return
        self._report(name, mounted, wait=True)  # the space used, as its last container left it
        self._release(name, mounted)

    def _release(self, name: str, mounted: Mounted) -> None:
        """Unmount, detach the loop device, tell the console; each step is harmless to repeat."""
        devices.unmount(Path(mounted.mountpoint))
        if mounted.loop:
            devices.detach_loop(Path(mounted.disk))
        self.api.change("POST", f"volumes/{name}/detach/", self._deadline())
        self._save(name, drop=True)

    def _report(self, name: str, mounted: Mounted, wait: bool = False) -> None:
        """Used space and the callers, for the console's pages: sent beside the answer to Docker, which does
        not wait for it (unless `wait`); a failure here fails nothing."""
        usage = {"used_bytes": devices.used_bytes(Path(mounted.mountpoint)), "mounts": list(mounted.callers)}

        def send() -> None:
            try:
                self.api.call("POST", f"volumes/{name}/usage/", self._deadline(), usage)
            except ConsoleError as exc:
                log.warning("could not report the usage of %s: %s", name, exc)

        if wait:
            send()
        else:
            threading.Thread(target=send, daemon=True, name=f"usage-{name}").start()

    def reconcile(self) -> None:
        """On start: volumes in use are mounted (again, after a reboot that Docker's restart brings back); what
        a crash left half-done is released; nothing the console thinks is attached here stays so unused."""
        current_boot = boot_id()
        rebooted = self.state.boot_id not in ("", current_boot)
        for name, mounted in list(self.state.volumes.items()):
            if rebooted:
                mounted.callers = []  # no container survived the reboot; Docker mounts again what it restarts
            try:
                if mounted.callers:
                    mounted.device = self._device(mounted)
                    devices.mount(mounted.device, Path(mounted.mountpoint))
                else:
                    self._release(name, mounted)
            except (devices.DeviceError, ConsoleError) as exc:
                log.error("reconcile of volume %s: %s", name, exc)
        for stray, device in devices.mounts_under(self.config.volumes_root).items():
            if stray.name not in self.state.volumes:
                log.warning("unmounting %s, which no state entry explains", stray)
                devices.release_stray(stray, device)
        self.state.boot_id = current_boot
        self._save()
        self._detach_unused()

    def _detach_unused(self) -> None:
        for volume in self.api.call("GET", "volumes/", self._deadline()):
            if volume["attached_here"] and volume["name"] not in self.state.volumes:
                log.info("detaching %s: attached here but mounted by no container", volume["name"])
                self.api.change("POST", f"volumes/{volume['name']}/detach/", self._deadline())
