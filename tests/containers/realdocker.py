"""Real parts for the volume plugin: a dockerd of the tests' own, and the plugin as its own process.

dockerd finds legacy plugins only at /run/docker/plugins/NAME.sock. So that the tests use the driver name
`facet` exactly as people type it, without touching the machine's own /run/docker/plugins (a real plugin,
or another test run), dockerd and the plugin run in a private mount namespace whose /run/docker/plugins is
a directory of the test's. Their mounts live and die with that namespace."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.realparts import ROOT, wait_for

IMAGE = "facet-busybox:test"
BUSYBOX = Path("/bin/busybox")


def missing_parts() -> str | None:
    """Why the real-parts tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root: dockerd, loop devices and mount need root"
    for program in ("dockerd", "docker", "unshare", "nsenter", "losetup", "mkfs.ext4", "mkfs.xfs", "blkid"):
        if not shutil.which(program):
            return f"{program} is not installed (make test installs docker.io, busybox-static, xfsprogs)"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control is missing)"
    if not BUSYBOX.is_file():
        return "busybox is not installed (make test installs busybox-static)"
    return None


def skip_without_parts() -> None:
    reason = missing_parts()
    if reason:
        print(f"SKIP real dockerd tests: {reason}", file=sys.stderr)
        pytest.skip(reason)


class Namespace:
    """A process holding a private mount namespace; commands run inside it with nsenter."""

    def __init__(self, plugins_dir: Path) -> None:
        script = (f"mkdir -p /run/docker/plugins && mount --bind {plugins_dir} /run/docker/plugins "
                  "&& exec sleep infinity")
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        wait_for(lambda: self._bound(plugins_dir), 10, "the mount namespace")

    def _bound(self, plugins_dir: Path) -> bool:
        try:
            return "/run/docker/plugins" in Path(f"/proc/{self.holder.pid}/mountinfo").read_text()
        except OSError:
            return False

    def command(self, *args: str) -> list[str]:
        return ["nsenter", "--target", str(self.holder.pid), "--mount", "--", *args]

    def mounts(self) -> str:
        return Path(f"/proc/{self.holder.pid}/mountinfo").read_text()

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


class Docker:
    """A dockerd with its own data root, exec root, pid file and socket, and an image built offline."""

    def __init__(self, root: Path, namespace: Namespace) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        self.process = subprocess.Popen(namespace.command(
            "dockerd", "--iptables=false", "--bridge=none", "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{self.socket}"),
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.run("version", check=False).returncode == 0 or self.process.poll() is not None, 60,
                 "dockerd to answer")
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        self.import_busybox()

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args], capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def import_busybox(self) -> None:
        rootfs = self.root / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        archive = self.root / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        self.run("import", "--change", "ENV PATH=/bin", str(archive), IMAGE)

    def close(self) -> None:
        self.run("rm", "--force", *self.run("ps", "-aq", check=False).stdout.split(), check=False)
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class Plugin:
    """facet-volume-plugin in the namespace, started and killed as a test says."""

    def __init__(self, namespace: Namespace, root: Path, env: dict[str, str]) -> None:
        self.namespace = namespace
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "FACET_PLUGIN_SOCKET": "/run/docker/plugins/facet.sock",
                    "FACET_VOLUMES_ROOT": str(root / "volumes"), "FACET_STATE_FILE": str(root / "state.json"),
                    "FACET_LOG_LEVEL": "DEBUG", **env}
        self.socket = root.parent / "plugins" / "facet.sock"  # the same file, seen from outside the namespace
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.root / f"plugin-{self.starts}.log").open("w")
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(self.namespace.command(sys.executable, "-m", "containers.plugin"),
                                        cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.socket.exists() or self.process.poll() is not None, 30, "the plugin to listen")
        assert self.process.poll() is None, self.logs()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.root.glob("plugin-*.log")))


def release_devices(namespace: Namespace, volumes_root: Path, container_dir: Path) -> None:
    """Whatever a failed test left: mounts under the volumes root, loop devices over the container's files."""
    for line in namespace.mounts().splitlines():
        point = line.split()[4]
        if point.startswith(str(volumes_root) + "/"):
            subprocess.run(namespace.command("umount", "-l", point), check=False)
    for disk in container_dir.rglob("*.raw"):
        found = subprocess.run(["losetup", "-j", str(disk), "-O", "NAME", "-n"], capture_output=True, text=True)
        for device in found.stdout.split():
            subprocess.run(["losetup", "-d", device], check=False)


def short_tempdir(prefix: str) -> Path:
    # Unix socket paths (containerd's, under the exec root) stop at 108 bytes: stay near /tmp.
    return Path(tempfile.mkdtemp(prefix=prefix))


def wait_until(predicate, timeout: float = 30, what: str = "the condition"):
    return wait_for(predicate, timeout, what, interval=0.1)


def elapsed(start: float) -> float:
    return time.monotonic() - start


class ConsoleProxy:
    """A TCP hop between the plugin and the console that a test can make "down" (connections closed at once)
    or "slow" (connections accepted and never answered). Either ends the connections the plugin keeps alive."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._mode = "up"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.piped: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode != "up":
            for end in self.piped:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self.piped.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
            elif self.mode == "slow":
                self.held.append(client)
            else:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                self.piped += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.listener.close()
        for client in self.held:
            client.close()
