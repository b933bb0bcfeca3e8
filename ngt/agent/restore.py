"""Self-service restore in the guest: `facet-guest-tools ssr list|attach SNAPSHOT|detach [SNAPSHOT]`.

The command talks to the running agent over a unix socket in its state directory (root only, mode 0600); the
agent asks the console through its link (an `ssr` message), and mounts the disks the console hot-plugs
(found by their serials under /dev/disk/by-id/) read-only under /mnt/facet-restore/SNAPSHOT/, one directory
per filesystem; it unmounts them before asking for the detach. The journal of a filesystem snapshotted while
mounted is never replayed (`noload`, `norecovery`): the disk is read-only and stays as it was."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

RESTORE_ROOT = "/mnt/facet-restore"
SOCKET_NAME = "ssr.sock"
DISK_BY_ID = "/dev/disk/by-id"
DEVICE_WAIT_SECONDS = 30
REQUEST_SECONDS = 180  # an attach runs the console's task: hot plug and a qcow2 overlay
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Read-only without touching the disk: no journal replay, and XFS's duplicate uuid (the live root's) accepted.
MOUNT_OPTIONS = {"ext2": "noload", "ext3": "noload", "ext4": "noload", "xfs": "norecovery,nouuid"}
SKIPPED = {"", "swap", "crypto_LUKS", "LVM2_member"}


class RestoreError(Exception):
    pass


def checked_name(name: str) -> str:
    if not SNAPSHOT_NAME.match(name or ""):
        raise RestoreError(f"{name!r} is not a snapshot name (ssr list shows them)")
    return name


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RestoreError(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _device(serial: str, by_id: Path) -> Path:
    link = by_id / f"virtio-{serial}"
    deadline = time.monotonic() + DEVICE_WAIT_SECONDS
    while not link.exists():
        if time.monotonic() > deadline:
            raise RestoreError(f"the disk {serial} did not appear in the guest within {DEVICE_WAIT_SECONDS} s")
        time.sleep(0.5)
    return link.resolve()


def _filesystems(device: Path) -> list[Path]:
    """The partitions of a disk, or the disk itself when it has none."""
    block = Path("/sys/block") / device.name
    partitions = sorted(p.name for p in block.iterdir() if p.name.startswith(device.name)) if block.is_dir() else []
    return [device.parent / name for name in partitions] or [device]


def mount(name: str, serials: list[str], root: Path = Path(RESTORE_ROOT), by_id: Path = Path(DISK_BY_ID)) -> list[str]:
    """Mount each filesystem of the snapshot's disks read-only; the directories they are under."""
    target_root = root / checked_name(name)
    mounted = []
    for serial in serials:
        for part in _filesystems(_device(serial, by_id)):
            kind = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", str(part)], capture_output=True,
                                  text=True, timeout=30).stdout.strip()
            if kind in SKIPPED:
                continue
            target = target_root / part.name
            target.mkdir(parents=True, exist_ok=True)
            options = ",".join(filter(None, ["ro", "nosuid", "nodev", "noexec", MOUNT_OPTIONS.get(kind, "")]))
            try:
                _run("mount", "-t", kind, "-o", options, str(part), str(target))
            except RestoreError:
                target.rmdir()
                continue  # a filesystem this guest cannot read (the ESP's, say) leaves the others
            mounted.append(str(target))
    return mounted


def unmount(name: str, root: Path = Path(RESTORE_ROOT), mounts_file: Path = Path("/proc/self/mounts")) -> list[str]:
    """Unmount whatever is mounted under the snapshot's directory (every snapshot's, with no name)."""
    base = root / checked_name(name) if name else root
    points = [line.split()[1] for line in mounts_file.read_text().splitlines()
              if line.split()[1] == str(base) or line.split()[1].startswith(str(base) + "/")]
    for point in sorted(points, reverse=True):
        try:
            _run("umount", point)
        except RestoreError:
            _run("umount", "-l", point)  # a shell still inside it: detached now, gone when it leaves
    if base.is_dir():
        for directory in sorted(base.glob("**/"), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()
    return points


# --- the `ssr` command -------------------------------------------------------------------------------------
def ask_agent(state_dir: Path, request: dict) -> dict:
    path = state_dir / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(REQUEST_SECONDS + 30)
            connection.connect(str(path))
            connection.sendall(json.dumps(request).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
    except OSError as exc:
        return {"ok": False, "error": f"the Guest Tools agent does not answer at {path} ({exc}): is it running, "
                                      "and are you root?"}
    try:
        return json.loads(answer)
    except ValueError:
        return {"ok": False, "error": "the agent's answer was cut off"}


def command(action: str, name: str, state_dir: Path) -> int:
    if action == "attach" and not name:
        print("ssr attach needs the snapshot's name (ssr list shows them)", file=sys.stderr)
        return 2
    answer = ask_agent(state_dir, {"action": action, "snapshot": name})
    if not answer.get("ok"):
        print(f"ssr {action}: {answer.get('error', 'refused')}", file=sys.stderr)
        return 1
    if action == "list":
        for snapshot in answer.get("snapshots", []):
            marks = ("consistent" if snapshot.get("consistent") else "crash-consistent") + (
                ", attached" if snapshot.get("attached") else "")
            print(f"{snapshot['name']:<24} {snapshot['created_at'][:19].replace('T', ' ')}  {marks}"
                  f"{'  ' + snapshot['description'] if snapshot.get('description') else ''}")
        if not answer.get("snapshots"):
            print("no snapshots of this VM")
    elif action == "attach":
        for point in answer.get("mounted", []):
            print(point)
        print(f"read-only until {answer.get('expires_at', '?')[:19].replace('T', ' ')} UTC; "
              f"ssr detach {name} when done", file=sys.stderr)
    else:
        print("detached: " + (", ".join(answer.get("detached", [])) or "nothing was attached"))
    return 0
