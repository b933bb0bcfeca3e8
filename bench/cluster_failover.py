"""A Facet cluster of three hosts on one machine, in network namespaces, and what happens when one dies.

    sudo .venv/bin/python bench/cluster_failover.py [--agents 300] [--vms 300] [--json FILE]

Needs root (namespaces, veth, a bridge), PostgreSQL's server binaries and redis-server. It makes namespaces
PREFIX-ctl (a bridge, PostgreSQL, Redis with AOF, celery beat), PREFIX-host-1..3 (each a Celery worker on
`default,host.host-N` and a Guest Tools Service instance that adds the VIP 10.77.0.50 to its eth0 while it
leads) and PREFIX-guests (the simulated agents of bench/cluster_agents.py, over TLS to the VIP). Every address
lives inside those namespaces; nothing leaves them. Then, in order:

1. a bulk power-on of the VMs: how its children spread over the three host queues;
2. a host that is not the leader's enters maintenance: its VMs move away; it leaves maintenance;
3. every process of the leader's host is SIGKILLed: how long until another instance holds the VIP and leads,
   until every agent is welcomed again, until tasks queued on the dead host fail with "host unreachable",
   and where its high-availability VMs run;
4. Redis is killed and started again (from its AOF): tasks requested while it is down, the leader lease.

Prints the times; with --json writes them for tests/integration/test_cluster.py. Removes its namespaces,
processes and files, also when it fails."""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's console, whatever the virtualenv has installed
from tests.waiting import wait_for  # noqa: E402  (found through the path above)

SUBNET, CONTROL, VIP, GUESTS = "10.77.0", "10.77.0.1", "10.77.0.50", "10.77.0.100"
HOSTS = ("host-1", "host-2", "host-3")
PG_PORT, REDIS_PORT = 5432, 6379


def sh(*command: str, check: bool = True) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


class Network:
    """The namespaces and the bridge; `remove` deletes them whatever state they are in."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names = {role: f"{prefix}-{role}" for role in ("ctl", *HOSTS, "guests")}

    def make(self) -> None:
        ctl = self.names["ctl"]
        for name in self.names.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", ctl, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", ctl, "address", "add", f"{CONTROL}/24", "dev", "br0")
        sh("ip", "-n", ctl, "link", "set", "br0", "up")
        addresses = {**{host: f"{SUBNET}.{11 + n}" for n, host in enumerate(HOSTS)}, "guests": GUESTS}
        for number, (role, address) in enumerate(addresses.items()):
            inside, outside = f"{self.prefix}i{number}", f"{self.prefix}o{number}"
            sh("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
            sh("ip", "link", "set", inside, "netns", self.names[role], "name", "eth0")
            sh("ip", "link", "set", outside, "netns", ctl)
            sh("ip", "-n", ctl, "link", "set", outside, "master", "br0", "up")
            sh("ip", "-n", self.names[role], "address", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", self.names[role], "link", "set", "eth0", "up")

    def pids(self, role: str) -> list[int]:
        return [int(pid) for pid in sh("ip", "netns", "pids", self.names[role], check=False).split()]

    def kill_all(self, role: str) -> None:
        for pid in self.pids(role):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def holds_vip(self, role: str) -> bool:
        return f" {VIP}/" in sh("ip", "-n", self.names[role], "-4", "address", "show", "dev", "eth0", check=False)

    def remove(self) -> None:
        for role in self.names:
            if os.path.exists(f"/run/netns/{self.names[role]}"):
                self.kill_all(role)
                sh("ip", "netns", "delete", self.names[role], check=False)


def leftover_namespaces(prefix_start: str = "fcb") -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list", check=False).splitlines()
            if line.startswith(prefix_start)]


class Cluster:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.prefix = f"fcb{os.getpid() % 100000}"
        self.network = Network(self.prefix)
        self.scratch = Path(tempfile.mkdtemp(prefix="fcb-"))
        self.scratch.chmod(0o755)
        self.processes: list[subprocess.Popen] = []
        self.results: dict = {}

    # --- the control namespace: PostgreSQL, Redis, beat -------------------------------------------------
    def start_postgres(self) -> None:
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not binaries:
            raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
        self.pg_bin = binaries[-1].parent
        self.pg_dir = self.scratch / "pg"
        self.pg_dir.mkdir()
        shutil.chown(self.pg_dir, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        sh(*as_postgres, str(self.pg_bin / "initdb"), "-D", str(self.pg_dir / "data"), "-U", "postgres",
           "--auth=trust", "-E", "UTF8")
        with open(self.pg_dir / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        sh("ip", "netns", "exec", self.network.names["ctl"], *as_postgres, str(self.pg_bin / "pg_ctl"),
           "-D", str(self.pg_dir / "data"), "-l", str(self.pg_dir / "log"), "-w", "-o",
           f"-c listen_addresses={CONTROL} -c port={PG_PORT} -c unix_socket_directories={self.pg_dir} "
           "-c fsync=off -c max_connections=200", "start")
        sh(str(self.pg_bin / "createdb"), "-h", str(self.pg_dir), "-p", str(PG_PORT), "-U", "postgres", "facet")

    def stop_postgres(self) -> None:
        if getattr(self, "pg_bin", None) and (self.pg_dir / "data" / "postmaster.pid").exists():
            sh("runuser", "-u", "postgres", "--", str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_dir / "data"),
               "-m", "immediate", "stop", check=False)

    def start_redis(self) -> subprocess.Popen:
        redis_dir = self.scratch / "redis"
        redis_dir.mkdir(exist_ok=True)
        self.redis = self.start("ctl", "redis", ["redis-server", "--bind", CONTROL, "--port", str(REDIS_PORT),
                                                 "--unixsocket", str(self.scratch / "redis.sock"),
                                                 "--unixsocketperm", "700", "--dir", str(redis_dir),
                                                 # reached over the bridge, which no other machine sees
                                                 "--protected-mode", "no",
                                                 "--save", "", "--appendonly", "yes", "--appendfsync", "always"])
        wait_for((self.scratch / "redis.sock").exists, 20, "redis-server")
        return self.redis

    def environment(self, inside: bool) -> dict:
        """Host processes reach PostgreSQL and Redis over the bridge; this process through their sockets."""
        database = (f"postgres://postgres@{CONTROL}:{PG_PORT}/facet" if inside
                    else f"postgres://postgres@{quote(str(self.pg_dir), safe='')}:{PG_PORT}/facet")
        redis = f"redis://{CONTROL}:{REDIS_PORT}/0" if inside else f"unix://{self.scratch / 'redis.sock'}"
        return {**os.environ, "FACET_DATABASE_URL": database, "FACET_REDIS_URL": redis,
                "FACET_DATA_DIR": str(self.scratch / "data"),
                "FACET_CA_KEY_FILE": str(self.scratch / "data" / "ca_key"),
                "FACET_SECRET_KEY": "cluster-bench-secret-key-" + "x" * 40, "FACET_CLUSTER_VIP": VIP,
                "FACET_CLUSTER_VIP_INTERFACE": "eth0" if inside else "",
                "DJANGO_SETTINGS_MODULE": "console.settings",
                "PYTHONPATH": str(ROOT)}

    def start(self, role: str, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = (self.scratch / f"{name}.log").open("a")
        process = subprocess.Popen(["ip", "netns", "exec", self.network.names[role], *command], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    # --- Django, in this process --------------------------------------------------------------------------
    def set_up_django(self) -> None:
        os.environ.update(self.environment(inside=False))
        import django

        django.setup()
        from django.core.management import call_command

        import console.celery  # noqa: F401  (the app the services send tasks with, on this cluster's Redis)

        call_command("migrate", verbosity=0)

    def seed(self) -> None:
        from console.core.drivers import files
        from console.core.models import SimDomain
        from console.models import VM, Cluster, Host, StorageContainer, VirtualDisk
        from console.services.vms import place

        cluster = Cluster.objects.create(name="bench", virtual_ip=VIP)
        storage = self.scratch / "storage"
        storage.mkdir()
        storage_container = StorageContainer.objects.create(cluster=cluster, name="shared", path=str(storage))
        for number, name in enumerate(HOSTS):
            Host.objects.create(cluster=cluster, name=name, address=f"{SUBNET}.{11 + number}", driver_uri="sim://",
                                cpus=64, memory_bytes=2**40)
        for number in range(self.options.vms):
            host = place(cluster, None, 1, 2**30)
            vm = VM.objects.create(cluster=cluster, name=f"vm-{number:04}", host=host, vcpus=1, memory_bytes=2**30,
                                   power_state="off", high_availability=number % 10 == 0)
            SimDomain.objects.create(uuid=vm.uuid, host_name=host.name)
            if vm.high_availability:  # on the shared storage container: reachable from every host
                disk = VirtualDisk.objects.create(vm=vm, index=0, size_bytes=2**20, storage_container=storage_container,
                                                  file_name=f"{vm.uuid}/disk0.raw")
                files.create_sparse(disk.path, 2**20)
        self.write_agents(cluster)

    def write_agents(self, cluster) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from console.models import VM
        from ngt.models import GuestTools, VMCertificate
        from ngt.services import authority

        directory = self.scratch / "agents"
        directory.mkdir(mode=0o700)
        signer = authority.open_authority(authority.authority_for(cluster))
        (directory / "ca.pem").write_text(signer.certificate_pem)
        agents, certificates = [], []
        for vm in VM.objects.order_by("name")[: self.options.agents]:
            key = ec.generate_private_key(ec.SECP256R1())
            issued = authority.issue(signer, vm, key.public_key())
            pem = directory / f"{vm.uuid}.pem"
            pem.write_bytes(issued.pem.encode() + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            certificates.append(VMCertificate(vm=vm, serial=issued.serial, certificate_pem=issued.pem,
                                              not_before=issued.not_before, not_after=issued.not_after))
            agents.append([str(vm.uuid), issued.serial, str(pem)])
        VMCertificate.objects.bulk_create(certificates)
        GuestTools.objects.bulk_create([GuestTools(vm_id=c.vm_id, enabled=True) for c in certificates])
        (directory / "agents.json").write_text(json.dumps({"ca": str(directory / "ca.pem"), "agents": agents}))

    # --- the hosts --------------------------------------------------------------------------------------------
    def start_host(self, host: str) -> None:
        env = self.environment(inside=True)
        self.start(host, f"{host}-worker", [
            sys.executable, "-m", "celery", "-A", "console", "worker", "--loglevel", "INFO", "--pool", "threads",
            "--concurrency", "4", "-Q", f"default,host.{host}", "--hostname", f"worker@{host}",
            "--without-gossip", "--without-mingle"], env)
        self.start(host, f"{host}-guest-tools", [sys.executable, "manage.py", "guest_tools_service", "--host", host],
                   env)

    def leader(self) -> str | None:
        from ngt.daemon import commands

        location = commands.redis_client().get(commands.LEASE_KEY)
        return json.loads(location)["host"] if location else None

    def agents_status(self) -> dict:
        try:
            return json.loads((self.scratch / "agents-status.json").read_text())
        except (OSError, ValueError):
            return {"linked": 0, "total": self.options.agents, "welcomed_at": []}

    # --- the scenario -------------------------------------------------------------------------------------
    def run(self) -> dict:
        started = time.monotonic()
        self.network.make()
        self.start_postgres()
        self.start_redis()
        self.set_up_django()
        from console.models import Host

        self.seed()
        self.start("ctl", "beat", [sys.executable, "-m", "celery", "-A", "console", "beat", "--loglevel", "INFO",
                                   "--schedule", str(self.scratch / "celerybeat-schedule")],
                   self.environment(inside=True))
        for host in HOSTS:
            self.start_host(host)
        wait_for(lambda: Host.objects.filter(worker_seen_at__isnull=False).count() == len(HOSTS), 90,
                 "the three workers' heartbeats")
        leader = wait_for(self.leader, 60, "a Guest Tools leader")
        wait_for(lambda: self.network.holds_vip(leader), 10, f"{leader} to hold the VIP")
        self.start("guests", "agents", [sys.executable, str(ROOT / "bench" / "cluster_agents.py"),
                                        str(self.scratch / "agents" / "agents.json"),
                                        str(self.scratch / "agents-status.json"), VIP])
        linking = time.monotonic()
        wait_for(lambda: self.agents_status()["linked"] == self.options.agents, 90, "every agent to link")
        self.results["agents"] = self.options.agents
        self.results["first_link_s"] = time.monotonic() - linking
        self.bulk_power_on()
        self.maintenance(next(host for host in HOSTS if host != leader))
        self.kill_host(leader)
        if self.options.redis_restart:
            self.restart_redis()
        self.results["total_s"] = time.monotonic() - started
        return self.results

    def bulk_power_on(self) -> None:
        from console.core.actors import Actor
        from console.core.models import Task
        from console.models import VM
        from console.services.bulk import request_bulk

        began = time.monotonic()
        parent = request_bulk(Actor.system(), "power-on", VM.objects.all())
        wait_for(lambda: Task.objects.get(pk=parent.pk).ended, 180, "the bulk power-on", interval=0.5)
        parent.refresh_from_db()
        spread = {}
        for queue in parent.children.values_list("queue", flat=True):
            spread[queue] = spread.get(queue, 0) + 1
        self.results.update(bulk_vms=parent.children.count(), bulk_status=parent.status, bulk_spread=spread,
                            bulk_s=time.monotonic() - began,
                            bulk_on=VM.objects.filter(power_state="on").count())

    def maintenance(self, host_name: str) -> None:
        from console.core.actors import Actor
        from console.core.models import Task
        from console.models import Host
        from console.services import hosts

        host = Host.objects.get(name=host_name)
        before = host.vms.count()
        began = time.monotonic()
        parent = hosts.request_enter_maintenance(Actor.system(), host)
        wait_for(lambda: Task.objects.get(pk=parent.pk).ended, 120, "the maintenance drain", interval=0.5)
        parent.refresh_from_db()
        self.results.update(maintenance_host=host_name, maintenance_vms_before=before,
                            maintenance_vms_after=host.vms.count(), maintenance_status=parent.status,
                            maintenance_s=time.monotonic() - began)
        hosts.leave_maintenance(Actor.system(), host)
        self.results["maintenance_left"] = Host.objects.get(pk=host.pk).state

    def kill_host(self, leader: str) -> None:
        from console.core.actors import Actor
        from console.core.models import Task
        from console.models import VM, Host
        from console.services import power

        ha_vms = list(VM.objects.filter(host__name=leader, high_availability=True).values_list("pk", flat=True))
        victims = list(VM.objects.filter(host__name=leader, high_availability=False).select_related("host")[:3])
        killed_at, wall_killed_at = time.monotonic(), time.time()
        self.network.kill_all(leader)
        tasks = [power.request_power(Actor.system(), vm, "power-off") for vm in victims]
        others = [host for host in HOSTS if host != leader]
        new_leader = wait_for(lambda: next((h for h in others if self.network.holds_vip(h) and self.leader() == h),
                                           None), 60, "a new leader holding the VIP", interval=0.05)
        self.results.update(killed_host=leader, new_leader=new_leader, failover_s=time.monotonic() - killed_at)

        def all_back() -> bool:
            status = self.agents_status()
            return len(status["welcomed_at"]) == self.options.agents and min(status["welcomed_at"]) > wall_killed_at
        wait_for(all_back, 90, "every agent to link again", interval=0.1)
        self.results["reconnect_s"] = time.monotonic() - killed_at
        self.results["vip_holders_alive"] = [h for h in others if self.network.holds_vip(h)]
        self.results["vip_left_on_killed_host"] = self.network.holds_vip(leader)

        def failed() -> bool:
            return all(Task.objects.get(pk=task.pk).status == "failed" for task in tasks)
        wait_for(failed, 90, "the killed host's tasks to fail", interval=0.5)
        self.results["unreachable_s"] = time.monotonic() - killed_at
        self.results["unreachable_errors"] = sorted({Task.objects.get(pk=t.pk).error.split(":")[0] for t in tasks})
        self.results["killed_host_state"] = Host.objects.get(name=leader).state
        self.results["killed_host_vms_unknown"] = VM.objects.filter(host__name=leader, power_state="unknown").count()
        wait_for(lambda: not Task.objects.filter(kind="vm.restart-elsewhere", status__in=["queued", "running"])
                 .exists(), 60, "the HA restarts", interval=0.5)
        restarted = VM.objects.filter(pk__in=ha_vms, power_state="on").exclude(host__name=leader).count()
        self.results.update(ha_vms=len(ha_vms), ha_restarted=restarted)

    def restart_redis(self) -> None:
        """Redis killed (SIGKILL) and started again from its AOF, with requests made while it is down."""
        from console.core.actors import Actor
        from console.core.models import Task
        from console.models import VM
        from console.services import power
        from ngt.daemon import commands

        alive = [h for h in HOSTS if h != self.results["killed_host"]]
        vms = list(VM.objects.filter(host__name__in=alive, power_state="on").select_related("host")[:5])
        self.redis.kill()
        self.redis.wait(10)
        (self.scratch / "redis.sock").unlink(missing_ok=True)
        began = time.monotonic()
        tasks = [power.request_power(Actor.system(), vm, "power-off") for vm in vms]  # the broker is down
        self.results["redis_requests_while_down"] = len(tasks)
        time.sleep(3)
        self.start_redis()
        wait_for(lambda: commands.redis_client().get(commands.LEASE_KEY), 30, "a leader after the restart")
        self.results["redis_leader_back_s"] = time.monotonic() - began
        wait_for(lambda: all(Task.objects.get(pk=t.pk).status == "succeeded" for t in tasks), 120,
                 "the tasks requested while Redis was down", interval=0.5)
        self.results["redis_tasks_done_s"] = time.monotonic() - began
        wait_for(lambda: self.agents_status()["linked"] == self.options.agents, 60, "every agent after Redis")
        self.results["redis_agents_back_s"] = time.monotonic() - began

    def clean_up(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop request must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.network.remove()
        self.stop_postgres()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def logs(self) -> str:
        return "".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}\n"
                       for log in sorted(self.scratch.glob("*.log")))


def report(results: dict) -> None:
    print(f"{results['agents']} agents linked over TLS to the VIP in {results['first_link_s']:.1f} s")
    print(f"bulk power-on of {results['bulk_vms']} VMs: {results['bulk_status']} in {results['bulk_s']:.1f} s; "
          f"children per queue: {results['bulk_spread']}")
    print(f"maintenance of {results['maintenance_host']}: {results['maintenance_vms_before']} VMs -> "
          f"{results['maintenance_vms_after']} in {results['maintenance_s']:.1f} s ({results['maintenance_status']}); "
          f"left: {results['maintenance_left']}")
    print(f"SIGKILL of every process of {results['killed_host']} (the leader's host):")
    print(f"  new leader {results['new_leader']} holds the VIP after {results['failover_s']:.1f} s (goal 15 s)")
    print(f"  every agent linked again after {results['reconnect_s']:.1f} s (goal 30 s)")
    print(f"  its queued tasks failed ({', '.join(results['unreachable_errors'])}) after "
          f"{results['unreachable_s']:.1f} s (goal 60 s); host {results['killed_host_state']}, "
          f"{results['killed_host_vms_unknown']} VMs unknown; HA VMs restarted: "
          f"{results['ha_restarted']} of {results['ha_vms']}")
    print(f"  live VIP holders: {results['vip_holders_alive']}; address left on the killed host's interface: "
          f"{results['vip_left_on_killed_host']}")
    if "redis_leader_back_s" in results:
        print(f"Redis SIGKILLed and restarted: leader again after {results['redis_leader_back_s']:.1f} s, the "
              f"{results['redis_requests_while_down']} tasks requested while it was down done after "
              f"{results['redis_tasks_done_s']:.1f} s, every agent linked after {results['redis_agents_back_s']:.1f} s")
    print(f"whole run: {results['total_s']:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--no-redis-restart", dest="redis_restart", action="store_false")
    parser.add_argument("--json", help="also write the results to this file")
    options = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: it makes network namespaces, veth pairs and a bridge")
    cluster = Cluster(options)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed run still cleans up (finally)
    try:
        results = cluster.run()
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        raise
    finally:
        cluster.clean_up()
    report(results)
    if options.json:
        Path(options.json).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
