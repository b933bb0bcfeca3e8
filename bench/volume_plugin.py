"""Benchmark of a Docker volume's life through our plugin against the same steps by hand.

    .venv/bin/python bench/volume_plugin.py [--rounds N] [--size 1G]      (as root)

Self-contained: a throwaway data directory with a migrated SQLite database, a cluster whose storage
container is a directory of its own, a registered Docker host; redis-server, a Celery worker and the console
under gunicorn; a dockerd of its own in a private mount namespace (as the tests run it) with our plugin.

Through dockerd, per round:  `docker volume create NAME --driver facet -o size=SIZE` (create), then
`docker run --rm -v NAME:/data IMAGE true` less the same run without the volume (mount + unmount: attach,
loop device, blkid, mkfs.ext4, mount; then unmount, detach).
By hand, per round: `truncate -s SIZE`, `mkfs.ext4 -q`, `mount -o loop`, `umount`.
It prints the median and the worst of each, and the ratio of the totals (goal: at most 1.5x by hand).
A miss is reported, not an error: the script exits 0 unless the benchmark itself could not run."""

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GOAL = 1.5


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


class Installation:
    """The console's processes on a throwaway data directory, as `manage.py serve` would run them."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.env = {**os.environ, "FACET_DATA_DIR": str(data), "FACET_REDIS_URL": f"unix://{data}/redis.sock",
                    "FACET_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        os.environ.update(self.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.processes: list[subprocess.Popen] = []

    def inventory(self, size_limit: int) -> tuple[str, Path]:
        """A cluster, a host, a storage container and a Docker host that sees it; answers the host's key."""
        from console.models import Cluster, Host, StorageContainer
        from console.services.actors import Actor
        from containers.services import docker_hosts

        cluster = Cluster.objects.create(name="bench")
        Host.objects.create(cluster=cluster, name="bench-host")
        container_dir = self.data / "container"
        container_dir.mkdir()
        StorageContainer.objects.create(cluster=cluster, name="default", path=str(container_dir),
                                        capacity_bytes=size_limit)
        _, key = docker_hosts.register(Actor.system(), "bench-docker")
        return key, container_dir

    def start(self, port: int) -> None:
        from console.services import processes
        from tests.realparts import wait_for

        self.processes.append(self._spawn(processes.redis_command(self.data / "redis.sock"), "redis"))
        wait_for((self.data / "redis.sock").exists, 10, "redis-server")
        self.processes.append(self._spawn(processes.worker_command(processes.worker_queues()), "worker"))
        self.processes.append(self._spawn(processes.web_command(port), "web"))

    def _spawn(self, command: str, name: str) -> subprocess.Popen:
        log = (self.data / f"{name}.log").open("w")
        # No shell between us and the process: stop() then waits for the process itself (redis saves on exit).
        return subprocess.Popen(shlex.split(command), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def stop(self) -> None:
        for process in reversed(self.processes):
            os.killpg(process.pid, 15)
            process.wait(30)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own loopback URL)
            return True
    except OSError:
        return False


def through_docker(docker, rounds: int, size: str, image: str) -> tuple[list[float], list[float]]:
    creates, mounts = [], []
    for n in range(rounds):
        name = f"bench{n}"
        creates.append(timed(["docker", "-H", f"unix://{docker.socket}", "volume", "create", name,
                              "--driver", "facet", "-o", f"size={size}"]))
        run = ["docker", "-H", f"unix://{docker.socket}", "run", "--rm", "--network", "none"]
        bare = timed([*run, image, "true"])
        with_volume = timed([*run, "--volume-driver", "facet", "-v", f"{name}:/data", image, "true"])
        mounts.append(with_volume - bare)
        docker.run("volume", "rm", name)
    return creates, mounts


def by_hand(work: Path, rounds: int, size: str) -> tuple[list[float], list[float]]:
    creates, mounts = [], []
    for n in range(rounds):
        disk, point = work / f"hand{n}.raw", work / f"hand{n}"
        point.mkdir()
        creates.append(timed(["truncate", "-s", size, str(disk)]))
        try:
            mounts.append(timed(["mkfs.ext4", "-q", str(disk)]) + timed(["mount", "-o", "loop", str(disk), str(point)])
                          + timed(["umount", str(point)]))
        finally:
            subprocess.run(["umount", str(point)], capture_output=True)
        disk.unlink()
        point.rmdir()
    return creates, mounts


def report(size: str, rounds: int, docker: tuple[list[float], list[float]], hand: tuple[list[float], list[float]]
           ) -> None:
    ms = lambda values: f"{statistics.median(values) * 1000:8.1f} {max(values) * 1000:8.1f}"  # noqa: E731
    print(f"\nVolume of {size}, {rounds} rounds; milliseconds (median, worst)\n")
    print(f"{'step':<22}{'through dockerd':>18}{'by hand':>18}")
    for label, index in (("create", 0), ("mount + unmount", 1)):
        print(f"{label:<22}{ms(docker[index]):>18}{ms(hand[index]):>18}")
    totals = [statistics.median(c) + statistics.median(m) for c, m in (docker, hand)]
    print(f"{'total (medians)':<22}{totals[0] * 1000:>9.1f}{'':>9}{totals[1] * 1000:>9.1f}")
    ratio = totals[0] / totals[1]
    verdict = "met" if ratio <= GOAL else "MISSED"
    print(f"\nratio {ratio:.2f}x by hand (goal: at most {GOAL}x): {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: dockerd, loop devices and mount need it", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="facet-bv-"))
    installation = Installation(work / "data")
    docker = namespace = plugin = None
    try:
        from tests.containers.realdocker import IMAGE, Docker, Namespace, Plugin, missing_parts

        missing = missing_parts()
        if missing:
            print(f"cannot run: {missing}", file=sys.stderr)
            return 2
        key, _ = installation.inventory(size_limit=1024**4)
        installation.start(args.port)
        (work / "plugins").mkdir()
        namespace = Namespace(work / "plugins")
        docker = Docker(work, namespace)
        (work / "p").mkdir()
        plugin = Plugin(namespace, work / "p", {"FACET_URL": f"http://127.0.0.1:{args.port}", "FACET_TOKEN": key,
                                                "FACET_DOCKER_HOST": "bench-docker", "FACET_LOG_LEVEL": "WARNING"})
        from tests.realparts import wait_for

        wait_for(lambda: answers(f"http://127.0.0.1:{args.port}/login/"), 60, "the console")
        plugin.start()
        through_docker(docker, 1, args.size, IMAGE)  # warm-up: plugin activation, first connections
        by_hand(work, 1, args.size)
        report(args.size, args.rounds, through_docker(docker, args.rounds, args.size, IMAGE),
               by_hand(work, args.rounds, args.size))
    finally:
        if plugin is not None:
            plugin.kill(15)
        if docker is not None:
            docker.close()
        if namespace is not None:
            namespace.close()
        installation.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
