"""Benchmark of a Docker volume's life through our plugin against the same steps by hand.

    .venv/bin/python bench/volume_plugin.py [--rounds N] [--size 1G]      (as root)

Self-contained: a throwaway data directory with a migrated SQLite database, a cluster whose storage
container is a directory of its own, a registered Docker host; redis-server, a Celery worker and the console
under gunicorn; a dockerd of its own in a private mount namespace (as the tests run it) with our plugin.

Through dockerd, per round, as a script would run them, for our driver and for Docker's own `local` driver (a
directory on this machine: what a Docker user would otherwise use, and the measure of Docker's own work around
any volume, CLI included): `docker volume create NAME --driver D [-o size=SIZE]` (create), then `docker run
--rm -v NAME:/data IMAGE true` less the same run without a volume (mount + unmount: for ours mkfs.ext4 and
mount, done by the plugin while the second command starts, then unmount; the console hears of the detach
after Docker has its answer). Then the whole life in one command, as `docker run` with a new volume does it:
`docker run --mount type=volume,...,volume-driver=D` less the same run without it. Ours less local, round by
round, is what our driver adds to Docker's own work: the figure to set against the steps by hand.
The plugin's socket, per round: the requests dockerd sends for the same life (Get, Create; Get, Get, Mount,
Get, Unmount), sent straight to the plugin: what our code costs without Docker's.
By hand, per round: `truncate -s SIZE`, `mkfs.ext4 -q`, `mount -o loop`, `umount`.
It prints the median and the worst of each, and the ratios of the totals (goal: at most 1.5x by hand).
A miss is reported, not an error: the script exits 0 unless the benchmark itself could not run."""

import argparse
import http.client
import json
import os
import shlex
import shutil
import socket
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
        from console.core.actors import Actor
        from console.models import Cluster, Host, StorageContainer
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


def through_docker(docker, rounds: int, size: str, image: str) -> dict[str, list[float]]:
    cli = ["docker", "-H", f"unix://{docker.socket}"]
    run = [*cli, "run", "--rm", "--network", "none"]
    times: dict[str, list[float]] = {f"{driver} {step}": [] for driver in ("facet", "local")
                                     for step in ("create", "mount", "one run")}
    for n in range(rounds):
        bare = timed([*run, image, "true"])
        for driver, options in (("facet", ["-o", f"size={size}"]), ("local", [])):
            name, fresh = f"{driver}{n}", f"{driver}-fresh{n}"
            times[f"{driver} create"].append(timed([*cli, "volume", "create", name, "--driver", driver, *options]))
            times[f"{driver} mount"].append(timed([*run, "-v", f"{name}:/data", image, "true"]) - bare)
            mount = f"type=volume,src={fresh},dst=/data,volume-driver={driver}" + "".join(
                f",volume-opt={option}" for option in options[1::2])
            times[f"{driver} one run"].append(timed([*run, "--mount", mount, image, "true"]) - bare)
            docker.run("volume", "rm", name, fresh)
    return times


class PluginSocket(http.client.HTTPConnection):
    """Docker's side of the plugin protocol: one kept-alive connection to the plugin's unix socket."""

    def __init__(self, path: Path) -> None:
        super().__init__("plugin", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))

    def ask(self, endpoint: str, **body) -> dict:
        self.request("POST", f"/VolumeDriver.{endpoint}", json.dumps(body).encode(),
                     {"Content-Type": "application/vnd.docker.plugins.v1.2+json"})
        return json.loads(self.getresponse().read())

    def life(self, name: str, size: str) -> tuple[float, float]:
        """Create, then mount and unmount, as dockerd asks for them; the seconds each took."""
        began = time.perf_counter()
        self.ask("Get", Name=name)  # not there yet: dockerd asks before it creates
        assert not self.ask("Create", Name=name, Opts={"size": size})["Err"]
        created = time.perf_counter()
        self.ask("Get", Name=name)
        self.ask("Get", Name=name)
        assert not self.ask("Mount", Name=name, ID="bench")["Err"]
        self.ask("Get", Name=name)
        assert not self.ask("Unmount", Name=name, ID="bench")["Err"]
        done = time.perf_counter()
        assert not self.ask("Remove", Name=name)["Err"]
        return created - began, done - created


def through_the_socket(path: Path, rounds: int, size: str) -> dict[str, list[float]]:
    plugin = PluginSocket(path)
    times: dict[str, list[float]] = {"create": [], "mount": []}
    for n in range(rounds):
        create, mount = plugin.life(f"sock{n}", size)
        times["create"].append(create)
        times["mount"].append(mount)
    plugin.close()
    return times


def by_hand(work: Path, rounds: int, size: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"create": [], "mount": []}
    for n in range(rounds):
        disk, point = work / f"hand{n}.raw", work / f"hand{n}"
        point.mkdir()
        times["create"].append(timed(["truncate", "-s", size, str(disk)]))
        try:
            times["mount"].append(timed(["mkfs.ext4", "-q", str(disk)])
                                  + timed(["mount", "-o", "loop", str(disk), str(point)])
                                  + timed(["umount", str(point)]))
        finally:
            subprocess.run(["umount", str(point)], capture_output=True)
        disk.unlink()
        point.rmdir()
    return times


def report(size: str, rounds: int, docker: dict[str, list[float]], plugin: dict[str, list[float]],
           hand: dict[str, list[float]]) -> None:
    median = lambda values: statistics.median(values) * 1000  # noqa: E731
    ms = lambda values: f"{median(values):7.1f} {max(values) * 1000:7.1f}"  # noqa: E731
    beyond = {step: [ours - local for ours, local in zip(docker[f"facet {step}"], docker[f"local {step}"],
                                                         strict=True)]
              for step in ("create", "mount", "one run")}
    columns = {"dockerd, ours": {step: docker[f"facet {step}"] for step in ("create", "mount", "one run")},
               "dockerd, local": {step: docker[f"local {step}"] for step in ("create", "mount", "one run")},
               "ours beyond local": beyond, "plugin socket": plugin, "by hand": hand}
    print(f"\nVolume of {size}, {rounds} rounds; milliseconds (median, worst); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(f"{'step':<18}" + "".join(f"{title:>20}" for title in columns))
    for label, key in (("create", "create"), ("mount + unmount", "mount"), ("one run", "one run")):
        print(f"{label:<18}" + "".join(f"{ms(column[key]) if key in column else '':>20}"
                                       for column in columns.values()))
    totals = {title: median(column["create"]) + median(column["mount"]) for title, column in columns.items()}
    print(f"{'total (medians)':<18}" + "".join(f"{total:>12.1f}{'':>8}" for total in totals.values()))
    print("\n(mount + unmount and one run: less the same `docker run` without a volume; one run: `docker run "
          "--mount type=volume,...` creating, mounting and unmounting a new volume)")
    ratios = {"ours beyond local": totals["ours beyond local"],
              "ours beyond local, one run": median(beyond["one run"]),
              "plugin socket": totals["plugin socket"], "dockerd, ours (raw)": totals["dockerd, ours"]}
    for title, total in ratios.items():
        ratio = total / totals["by hand"]
        print(f"ratio {title + ':':<28}{ratio:5.2f}x by hand (goal: at most {GOAL}x): "
              + ("met" if ratio <= GOAL else "MISSED"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
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
               through_the_socket(plugin.socket, args.rounds, args.size), by_hand(work, args.rounds, args.size))
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
