"""The volume driver: what each Docker request does, with the console (volume groups, attachments) on one
side and this machine's devices and mounts on the other.

Mounts are counted per caller id (Docker gives each container's use of a volume its own id): the first Mount
attaches and mounts, the last Unmount unmounts and then detaches. The state file is written before every step
that a crash could interrupt, and `reconcile` finishes or undoes such a step on start.

Docker waits for the console only where it must: a Create (the console says whether the volume may exist) and
the attach of a first Mount (one writer at a time). A Create asks the console to attach the new volume here in
the same request (a registered machine's attach needs no hypervisor), since Docker mounts a volume it creates
for `docker run -v` at once. That first Mount then needs no console at all, and finds the volume formatted and
mounted already, by a thread that did so while Docker went on with its own work (making the container, or the
next command starting). A volume so held that no Mount takes up in time (`hold_seconds`: a person may type
`docker run` a while after `docker volume create`) is released like an unmounted one.

A detach is told to the console by the upkeep thread right after the Unmount is answered, and again, backing
off, while the console cannot be reached; until the console hears of it the group shows attached here, which
keeps anyone else from taking it, never the reverse. A Mount takes back a detach the console has not heard of;
one the console is still carrying out refuses the Mount (Docker shows the console's words), since the disk is
on its way out."""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from . import devices, protocol
from .config import Config
from .facet_api import ConsoleError, ConsoleUnreachable, Deadline, FacetApi
from .state import Mounted, State, StateUnreadable, boot_id

log = logging.getLogger("facet-volume-plugin")
# Docker asks Get several times for one command (before Create, Mount, Remove); what the console said of a
# volume this recently answers them. A volume mounted here is known anyway: it is attached here.
DESCRIPTION_SECONDS = 2.0


class VolumeDriver:
    def __init__(self, config: Config, api: FacetApi) -> None:
        self.config = config
        self.api = api
        self.state = self._load_state()
        self.upkeep = Upkeep(self, config.report_seconds)
        self._state_lock = threading.Lock()
        self._volume_locks: dict[str, threading.Lock] = {}
        self._described: dict[str, tuple[float, dict]] = {}

    def _load_state(self) -> State:
        """The state file; one that cannot be read is taken as empty only where nothing is mounted (after a
        machine crash): with volumes mounted, containers may be using them, and forgetting them would let the
        console give them to another host."""
        try:
            return State.load(self.config.state_file)
        except StateUnreadable as exc:
            mounted = devices.mounts_under(self.config.volumes_root)
            if mounted:
                raise StateUnreadable(
                    f"{exc}, and volumes are mounted under {self.config.volumes_root} "
                    f"({', '.join(sorted(point.name for point in mounted))}): stop the containers using them, "
                    "unmount them, and move the file away") from None
            log.error("%s; nothing is mounted here: starting from what the console says", exc)
            return State()

    def handle(self, endpoint: str, request: dict) -> dict:
        """Answer one checked request (see protocol.ENDPOINTS)."""
        name = request.get("Name", "")
        if endpoint == "/Plugin.Activate":
            return {"Implements": ["VolumeDriver"]}
        if endpoint == "/VolumeDriver.Capabilities":
            return {"Capabilities": {"Scope": "global"}}  # one console: every host sees every volume
        if endpoint == "/VolumeDriver.List":
            volumes = self.api.call("GET", "volumes/", self._deadline())
            for volume in volumes:
                self._remember(volume)
            return {"Volumes": [self._describe(volume) for volume in volumes]}
        if endpoint == "/VolumeDriver.Get":
            return {"Volume": self._describe(self._volume(name))}
        if endpoint == "/VolumeDriver.Path":
            mounted = self.state.volumes.get(name)
            return {"Mountpoint": mounted.mounted_at if mounted else ""}
        if endpoint == "/VolumeDriver.Create":
            self.create(name, protocol.create_options(request.get("Opts"), self.config.default_container))
            return {}
        with self._lock_of(name):
            if endpoint == "/VolumeDriver.Remove":
                self.remove(name)
                return {}
            if endpoint == "/VolumeDriver.Mount":
                return {"Mountpoint": self.mount(name, request["ID"])}
            self.unmount(name, request["ID"])
            return {}

    def _lock_of(self, name: str) -> threading.Lock:
        return self._volume_locks.setdefault(name, threading.Lock())  # setdefault: one lock per name, even racing

    def _deadline(self) -> Deadline:
        return Deadline(self.config.call_seconds)

    @contextlib.contextmanager
    def _changing_state(self) -> Iterator[State]:
        """Change the state and write the file. One lock around both, since requests for other volumes and the
        upkeep thread change the same state from their own threads."""
        with self._state_lock:
            yield self.state
            self.state.save(self.config.state_file)

    def _remember(self, volume: dict | None) -> None:
        if volume and "devices" in volume:
            self._described[volume["name"]] = (time.monotonic(), volume)

    def _volume(self, name: str) -> dict:
        """The console's description of the volume: a recent one, or asked for now."""
        said, volume = self._described.get(name, (0.0, None))
        if volume is not None and (name in self.state.volumes or time.monotonic() - said < DESCRIPTION_SECONDS):
            return volume
        volume = self.api.call("GET", f"volumes/{name}/", self._deadline())
        self._remember(volume)
        return volume

    def _describe(self, volume: dict) -> dict:
        mounted = self.state.volumes.get(volume["name"])
        return protocol.volume(volume["name"], mounted.mounted_at if mounted else "", {
            "size": volume["size_bytes"], "fstype": volume["fstype"], "container": volume["container"],
            "attachedTo": volume["attached_to"] or ""})

    def create(self, name: str, options: protocol.CreateOptions) -> None:
        try:
            answer = self.api.change("POST", "volumes/", self._deadline(), {
                "name": name, "size_bytes": options.size_bytes, "fstype": options.fstype,
                "container": options.container, "attach": self.config.hold_seconds > 0})
        except ConsoleUnreachable:
            # The console may still make it, attached here, after our deadline: it is told to let it go.
            with self._lock_of(name), self._changing_state() as state:
                if name not in state.volumes:
                    state.detaches.setdefault(name, None)
            self.upkeep.detach_now()
            raise
        # A create run to its end carries the new volume; a volume that existed already is answered as it is.
        volume = answer.get("volume", answer)
        self._remember(volume)
        if volume["attached_here"] and self.config.hold_seconds > 0:
            self._hold(name, volume)

    def _hold(self, name: str, volume: dict) -> None:
        """Keep a volume attached here for the Mount expected next, and make it ready meanwhile. (Also one
        attached here by a create whose answer came too late, and that no entry here explains.)"""
        with self._lock_of(name), self._changing_state() as state:
            if name in state.volumes:
                return
            state.volumes[name] = self._entry(name, volume,
                                              held_until=time.monotonic() + self.config.hold_seconds)
            state.detaches.pop(name, None)  # the console has it attached here now: an earlier "let go" is moot
        threading.Thread(target=self._prepare_held, args=(name,), daemon=True, name=f"prepare-{name}").start()

    def remove(self, name: str) -> None:
        mounted = self.state.volumes.get(name)
        if mounted is not None and mounted.callers:
            raise ConsoleError(f"volume {name} is mounted here by {len(mounted.callers)} container(s)")
        if mounted is not None:
            self._release(name, mounted)  # a release that a crash interrupted ends now
        if name in self.state.detaches:
            self._detach(name)  # the console must know it is free before it deletes it
        self.api.change("DELETE", f"volumes/{name}/", self._deadline())
        self._described.pop(name, None)

    def mount(self, name: str, caller: str) -> str:
        mounted = self.state.volumes.get(name)
        if mounted is None or not mounted.callers:  # no entry, or one whose release a crash interrupted
            mounted = self._attach_and_mount(name)
        if caller not in mounted.callers or mounted.held_until:
            with self._changing_state():  # one write: a held volume becomes this caller's
                mounted.held_until = 0.0
                if caller not in mounted.callers:
                    mounted.callers.append(caller)
        self.upkeep.report_soon()
        return mounted.mountpoint

    def _entry(self, name: str, volume: dict, held_until: float = 0.0) -> Mounted:
        disk = volume["devices"][0]
        return Mounted(device="", mountpoint=str(self.config.volumes_root / name), disk=disk["path"],
                       loop=disk["loop"], fstype=volume["fstype"] or "ext4", held_until=held_until)

    def _attach_and_mount(self, name: str) -> Mounted:
        mounted = self.state.volumes.get(name)
        if mounted is not None and mounted.held_until:
            volume = self._volume(name)  # attached here by its Create, which described it
        else:
            deadline = self._deadline()
            answer = self.api.change("POST", f"volumes/{name}/attach/", deadline)
            volume = answer.get("volume") or self.api.call("GET", f"volumes/{name}/", deadline)
            self._remember(volume)
            mounted = self._entry(name, volume)
        if mounted.device:  # held, and made ready ahead of this Mount; its disk may have gone since
            try:
                self._source(mounted)
            except devices.DeviceError:
                self._release(name, mounted)
                raise
        else:
            self._make_ready(name, mounted, volume["devices"][0]["size_bytes"])
        return mounted

    def _prepare_held(self, name: str) -> None:
        """Make a volume held for its first Mount ready while Docker goes on with its own work, so that the Mount
        finds it mounted. A failure is the Mount's to meet again, and to tell Docker."""
        with self._lock_of(name):
            mounted = self.state.volumes.get(name)
            if mounted is None or not mounted.held_until or mounted.device:
                return  # mounted, released or removed meanwhile
            try:
                self._make_ready(name, mounted, self._volume(name)["devices"][0]["size_bytes"])
            except (devices.DeviceError, ConsoleError) as exc:
                log.warning("volume %s could not be made ready ahead of its Mount: %s", name, exc)

    def _make_ready(self, name: str, mounted: Mounted, disk_bytes: int) -> None:
        """Find its device, make a filesystem if it has none, grow it to its disk, mount it."""
        try:
            source = self._source(mounted)
            with self._changing_state() as state:  # written before the mount: a crash now is undone on start
                state.volumes[name] = mounted
                state.detaches.pop(name, None)  # attached here again: a detach not yet told is moot
            found = devices.filesystem_of(source)
            if found:
                mounted.fstype = found
            else:
                devices.make_filesystem(source, mounted.fstype, name)
            # A disk grown while it was detached: its filesystem grows now (ext before the mount, xfs after).
            filesystem_bytes = devices.grow_unmounted(source, mounted.fstype,
                                                      devices.filesystem_size(source, mounted.fstype))
            mounted.device = devices.mount(source, Path(mounted.mountpoint), mounted.loop)
        except devices.DeviceError:
            self._release(name, mounted)
            raise
        self._fit(name, mounted, filesystem_bytes, disk_bytes)

    def _fit(self, name: str, mounted: Mounted, filesystem_bytes: int, disk_bytes: int) -> None:
        """Grow the mounted filesystem to its disk, which the console says is `disk_bytes` now; that size is then
        done with. A failure is not the container's: it is said, and an ext filesystem grows offline at its
        next mount. (Inside a VM the disk keeps its size until it is attached again: nothing grows then.)"""
        try:
            devices.fit(mounted.device, Path(mounted.disk), mounted.loop, Path(mounted.mountpoint), mounted.fstype,
                        filesystem_bytes)
        except (devices.DeviceError, OSError) as exc:
            log.error("could not grow the filesystem of volume %s while mounted (it grows at its next mount): %s",
                      name, exc)
        if mounted.size_bytes != disk_bytes:
            with self._changing_state():
                mounted.size_bytes = disk_bytes

    @staticmethod
    def _source(mounted: Mounted) -> str:
        if mounted.loop:
            return devices.disk_file(Path(mounted.disk))
        return devices.wait_for_disk(Path(mounted.disk))

    def unmount(self, name: str, caller: str) -> None:
        mounted = self.state.volumes.get(name)
        if mounted is None:
            return  # already released (Docker may repeat an Unmount after our restart)
        with self._changing_state():
            if caller in mounted.callers:
                mounted.callers.remove(caller)
        if mounted.callers:
            self.upkeep.report_soon()
            return
        self._release(name, mounted, devices.used_bytes(Path(mounted.mountpoint)))

    def _release(self, name: str, mounted: Mounted, used_bytes: int | None = None) -> None:
        """Unmount and free the loop device (each step harmless to repeat); the detach is the upkeep's to tell."""
        self._let_go(name, mounted, detach=True, used_bytes=used_bytes)
        self.upkeep.detach_now()

    def _let_go(self, name: str, mounted: Mounted, detach: bool, used_bytes: int | None = None) -> None:
        devices.unmount(Path(mounted.mountpoint))
        if mounted.loop:
            devices.detach_loops(Path(mounted.disk))
        with self._changing_state() as state:
            state.volumes.pop(name, None)
            if detach:
                state.detaches[name] = used_bytes

    def _detach(self, name: str) -> None:
        used_bytes = self.state.detaches[name]
        body = {} if used_bytes is None else {"used_bytes": used_bytes}
        self.api.change("POST", f"volumes/{name}/detach/", self._deadline(), body)
        with self._changing_state() as state:
            state.detaches.pop(name, None)

    def send_detaches(self) -> bool:
        """Tell the console of the detaches it has not heard of; False when it cannot be reached now."""
        with self._state_lock:
            names = list(self.state.detaches)
        for name in names:
            with self._lock_of(name):
                if name not in self.state.detaches:
                    continue  # a Mount took it back meanwhile
                try:
                    self._detach(name)
                except ConsoleUnreachable as exc:
                    log.warning("the detach of %s waits for the console: %s", name, exc)
                    return False
                except ConsoleError as exc:  # deleted, or moved away by an Admin: nothing left to tell
                    log.warning("dropping the detach of %s: %s", name, exc)
                    with self._changing_state() as state:
                        state.detaches.pop(name, None)
        return True

    def release_expired_holds(self) -> None:
        """Volumes a Create attached here for a Mount that did not come in time go back to the console. One busy
        with a Docker request now, or that cannot be unmounted yet, is tried again next time."""
        now = time.monotonic()
        for name in [name for name, m in list(self.state.volumes.items()) if 0 < m.held_until <= now]:
            lock = self._lock_of(name)
            if not lock.acquire(blocking=False):
                continue
            try:
                mounted = self.state.volumes.get(name)
                if mounted is not None and 0 < mounted.held_until <= now:  # no Mount took it up meanwhile
                    log.info("releasing %s: created here and mounted by no container within %g s", name,
                             self.config.hold_seconds)
                    self._release(name, mounted)
            except (devices.DeviceError, OSError) as exc:
                log.warning("could not release %s yet: %s", name, exc)
            finally:
                lock.release()

    def report(self) -> None:
        """Used space and callers of the volumes mounted here, for the console's pages; its answer says how big
        each disk is now, and a mounted filesystem whose disk grew is grown to fill it."""
        with self._state_lock:
            mounted = {name: m for name, m in self.state.volumes.items() if m.callers or m.held_until}
        if not mounted:
            return
        usage = [{"name": name, "used_bytes": devices.used_bytes(Path(m.mountpoint)) if m.device else None,
                  "mounts": list(m.callers)} for name, m in mounted.items()]
        try:
            answer = self.api.call("POST", "usage/", self._deadline(), {"volumes": usage})
        except ConsoleError as exc:
            log.warning("could not report usage: %s", exc)
            return
        for volume in answer["volumes"]:
            self._remember(volume)
            if volume["attached_here"]:
                self._grow(volume)
            else:
                self._forget_held(volume["name"])

    def _forget_held(self, name: str) -> None:
        """A volume held here that the console no longer has attached here (an Admin moved or detached it by
        force): it is let go without a detach, so that it is not mounted here while it is someone else's."""
        with self._lock_of(name):
            mounted = self.state.volumes.get(name)
            if mounted is not None and mounted.held_until and not mounted.callers:
                log.warning("volume %s, held here for its first Mount, was taken away in the console", name)
                self._let_go(name, mounted, detach=False)

    def _grow(self, volume: dict) -> None:
        with self._lock_of(volume["name"]):
            mounted = self.state.volumes.get(volume["name"])
            disk_bytes = volume["devices"][0]["size_bytes"]
            if mounted is not None and mounted.callers and disk_bytes > mounted.size_bytes:
                self._fit(volume["name"], mounted, mounted.size_bytes, disk_bytes)

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
                    mounted.device = devices.mount(self._source(mounted), Path(mounted.mountpoint), mounted.loop)
                else:
                    self._release(name, mounted)
            except devices.DeviceError as exc:
                log.error("reconcile of volume %s: %s", name, exc)
        for stray, device in devices.mounts_under(self.config.volumes_root).items():
            if stray.name not in self.state.volumes:
                log.warning("unmounting %s, which no state entry explains", stray)
                devices.release_stray(stray, device)
        with self._changing_state() as state:
            state.boot_id = current_boot
        self._detach_unused()
        self.send_detaches()

    def _detach_unused(self) -> None:
        for volume in self.api.call("GET", "volumes/", self._deadline()):
            if volume["attached_here"] and volume["name"] not in self.state.volumes:
                log.info("detaching %s: attached here but mounted by no container", volume["name"])
                with self._changing_state() as state:
                    state.detaches.setdefault(volume["name"], None)


class Upkeep(threading.Thread):
    """Beside Docker's requests: tells the console of detaches (at once, then backing off while it cannot be
    reached), and reports usage every period and shortly after mounts change."""

    FIRST_RETRY_SECONDS = 1.0
    SOON_SECONDS = 1.0  # a burst of mounts (compose up) makes one report

    def __init__(self, driver: VolumeDriver, period: float) -> None:
        super().__init__(daemon=True, name="upkeep")
        self.driver = driver
        self.period = period
        self._wake = threading.Event()
        self._report_at = 0.0
        self._detach_at = 0.0
        self._retry = self.FIRST_RETRY_SECONDS

    def report_soon(self) -> None:
        self._report_at = min(self._report_at, time.monotonic() + self.SOON_SECONDS)
        self._wake.set()

    def detach_now(self) -> None:
        self._detach_at = 0.0
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.clear()
            least = 0.0
            try:
                self._step()
            except Exception:  # the thread must outlive a bug, or detaches would never be told again
                log.exception("upkeep failed")
                least = self.FIRST_RETRY_SECONDS  # not at once: the same failure would spin
            waits = [self._report_at]
            if self.driver.state.detaches:
                waits.append(self._detach_at)
            self._wake.wait(max(least, min(waits) - time.monotonic()))

    def _step(self) -> None:
        now = time.monotonic()
        if now >= self._report_at:
            self._report_at = now + self.period
            self.driver.report()
        self.driver.release_expired_holds()  # within a report period of their end: the wait is never longer
        if self.driver.state.detaches and now >= self._detach_at:
            self._detach_at = now + self._retry  # the next try, unless this one empties the list
            told = self.driver.send_detaches()
            self._retry = self.FIRST_RETRY_SECONDS if told else min(self._retry * 2, self.period)
