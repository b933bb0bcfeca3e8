"""The Guest Tools Service under many agents: N simulated agents in one asyncio process, each with its own
VM certificate, connect over mutual TLS 1.3 to one service process on loopback and send heartbeats.

    .venv/bin/python bench/guest_tools_service.py [--agents 2000] [--seconds 10] [--interval 2]

Self-contained: a temporary data directory (SQLite, CA key file), a redis-server on a private unix socket,
one `manage.py guest_tools_service` instance (proxy and leader) on 127.77.0.2 with the VIP on 127.77.0.10.
Prints handshakes per second (until every agent is welcomed), heartbeat round trips p50/p99 (the leader
acknowledges each), and the service's CPU (share of one core) and memory. Goal: p99 under 50 ms at under
one core. Removes everything it started and wrote; exits 0 unless the benchmark itself could not run."""

import argparse
import asyncio
import json
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch import ROOT, scratch_console  # noqa: E402  (bench/ is the script's directory)

SCRATCH = scratch_console("facet-bench-gts-")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from django.core.management import call_command  # noqa: E402

from console.models import VM, Cluster, Host  # noqa: E402
from console.services import processes  # noqa: E402
from ngt import authority  # noqa: E402
from ngt.models import GuestTools, VMCertificate  # noqa: E402

ADDRESS, VIP, PORT = "127.77.0.2", "127.77.0.10", 2074
HANDSHAKES_AT_ONCE = 100


def make_agents(count: int, directory: Path) -> list[tuple[str, str, Path]]:
    """VMs with a current certificate each; returns (vm uuid, serial, PEM directory)."""
    cluster = Cluster.objects.create(name="bench", virtual_ip=VIP)
    host = Host.objects.create(cluster=cluster, name="bench-host", address=ADDRESS, driver_uri="sim://", cpus=64,
                               memory_bytes=2**40)
    signer = authority.open_authority(authority.authority_for(cluster))
    (directory / "ca.pem").write_text(signer.certificate_pem)
    vms = VM.objects.bulk_create([VM(cluster=cluster, host=host, name=f"agent-{n}", hostname=f"agent-{n}",
                                     vcpus=1, memory_bytes=2**30, power_state="off") for n in range(count)])
    agents, certificates = [], []
    for vm in VM.objects.filter(cluster=cluster):
        key = ec.generate_private_key(ec.SECP256R1())
        issued = authority.issue(signer, vm, key.public_key())
        pem = directory / f"{vm.uuid}.pem"
        pem.write_bytes(issued.pem.encode() + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        certificates.append(VMCertificate(vm=vm, serial=issued.serial, certificate_pem=issued.pem,
                                          not_before=issued.not_before, not_after=issued.not_after))
        agents.append((str(vm.uuid), issued.serial, pem))
    VMCertificate.objects.bulk_create(certificates)
    GuestTools.objects.bulk_create([GuestTools(vm=vm, enabled=True) for vm in vms])
    return agents


class SimulatedAgent:
    def __init__(self, vm_uuid: str, serial: str, pem: Path, ca: Path) -> None:
        self.vm_uuid, self.serial = vm_uuid, serial
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_verify_locations(ca)
        self.context.load_cert_chain(pem)
        self.sent: dict[str, float] = {}
        self.round_trips: list[float] = []

    async def link(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            self.reader, self.writer = await asyncio.open_connection(VIP, PORT, ssl=self.context,
                                                                     server_hostname=VIP)
            self.send({"id": "h", "type": "hello", "vm_uuid": self.vm_uuid, "certificate_serial": self.serial,
                       "agent_version": "1.0.0", "os": "bench", "hostname": "bench", "ip_addresses": []})
            answer = json.loads(await self.reader.readline())
            if answer["type"] != "welcome":
                raise RuntimeError(f"agent {self.vm_uuid} not welcomed: {answer}")

    def send(self, message: dict) -> None:
        self.writer.write(json.dumps(message).encode() + b"\n")

    async def heartbeats(self, seconds: float, interval: float, offset: float) -> None:
        await asyncio.sleep(offset)
        reading = asyncio.ensure_future(self.read_acks())
        end, number = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            number += 1
            self.sent[f"b{number}"] = time.monotonic()
            self.send({"id": f"b{number}", "type": "heartbeat"})
            await asyncio.sleep(interval)
        await asyncio.sleep(0.5)
        reading.cancel()

    async def read_acks(self) -> None:
        while line := await self.reader.readline():
            message = json.loads(line)
            if message["type"] == "heartbeat_ack" and message["id"] in self.sent:
                self.round_trips.append(time.monotonic() - self.sent.pop(message["id"]))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(agents: list[SimulatedAgent], service_pid: int, seconds: float, interval: float) -> dict:
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    started = time.monotonic()
    await asyncio.gather(*(agent.link(gate) for agent in agents))
    linking = time.monotonic() - started
    cpu_before, wall_before = cpu_seconds(service_pid), time.monotonic()
    await asyncio.gather(*(agent.heartbeats(seconds, interval, interval * n / len(agents))
                           for n, agent in enumerate(agents)))
    cpu = (cpu_seconds(service_pid) - cpu_before) / (time.monotonic() - wall_before)
    trips = sorted(trip for agent in agents for trip in agent.round_trips)
    return {"handshakes_per_s": len(agents) / linking, "heartbeats": len(trips),
            "p50_ms": statistics.median(trips) * 1000, "p99_ms": trips[int(len(trips) * 0.99) - 1] * 1000,
            "cpu_cores": cpu, "memory_mib": memory_mib(service_pid)}


def start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_line(log: Path, line: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while line not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log.name} did not say {line!r}:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--interval", type=float, default=2, help="seconds between an agent's heartbeats")
    options = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 4 descriptors per agent in the service
    started: list[subprocess.Popen] = []
    try:
        call_command("migrate", verbosity=0)
        pems = SCRATCH / "agents"
        pems.mkdir()
        print(f"issuing {options.agents} VM certificates ...", flush=True)
        records = make_agents(options.agents, pems)
        redis = start(["redis-server", "--port", "0", "--unixsocket", str(SCRATCH / "redis.sock"), "--save", "",
                       "--appendonly", "no"], SCRATCH / "redis.log")
        started.append(redis)
        wait_for_line(SCRATCH / "redis.log", "ready to accept connections", redis)
        service = start([*processes.guest_tools_service_command("bench-host").split()], SCRATCH / "service.log")
        started.append(service)
        wait_for_line(SCRATCH / "service.log", "leading:", service)
        agents = [SimulatedAgent(vm_uuid, serial, pem, pems / "ca.pem") for vm_uuid, serial, pem in records]
        result = asyncio.run(measure(agents, service.pid, options.seconds, options.interval))
    except BaseException:
        for log in sorted(SCRATCH.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for process in started:
            process.terminate()
            process.wait(15)
        shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"{options.agents} agents, heartbeat every {options.interval} s for {options.seconds} s")
    print(f"handshakes per second:    {result['handshakes_per_s']:.0f}")
    print(f"heartbeat round trip:     p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
          f"({result['heartbeats']} heartbeats)")
    print(f"service CPU:              {result['cpu_cores']:.2f} cores; memory {result['memory_mib']:.0f} MiB RSS")
    verdict = "met" if result["p99_ms"] < 50 and result["cpu_cores"] < 1 else "missed"
    print(f"goal (p99 < 50 ms at < 1 core): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
