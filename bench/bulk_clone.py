"""Bulk clone end to end: N clones of a template with Guest Tools and a cloud-config, through the API (gunicorn)
and a real Celery worker on the sim driver.

    .venv/bin/python bench/bulk_clone.py [--clones 1000] [--concurrency 4] [--hosts 2]

Self-contained: a temporary data directory (SQLite), a redis-server on a private unix socket, one web
process (`manage.py serve`'s gunicorn command, one worker process) and one Celery worker serving every host.
A template (1 vCPU, 64 MiB, a 1 MiB disk with data, a NIC with a static address, Guest Tools enabled) is
bulk-cloned with `POST /api/v1/vms/{uuid}/bulk-clone/`: a per-clone CSV (hostname, a key-value), a cloud-config,
power on; each clone gets its own certificate on a tools ISO (the default for a source with Guest Tools). The
script then follows the parent task until it ends, and checks the result (N clones, distinct names, MACs,
addresses and certificate serials, a customization ISO and a tools ISO each, no task left). Prints: the
request's time, clones per second, the time of each stage of the worker's runs (from its stage log lines: a
batch of clones provisioned together, or one clone), and the peak memory (VmHWM) of the web and worker
processes. Target (issue 13): 1,000 clones in at most 10 s. A miss is reported, not an error: the
script exits 0 unless the benchmark itself could not run."""

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch import machine, scratch_console, start, stop  # noqa: E402  (bench/ is the script's directory)

SCRATCH = scratch_console("facet-bench-bc-", FACET_LOG_LEVEL="WARNING")

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from console.core import access  # noqa: E402
from console.core.actors import Actor  # noqa: E402
from console.core.drivers import files  # noqa: E402
from console.core.models import SimDomain, Task  # noqa: E402
from console.models import VM, CdRom, Cluster, Host, Network, Nic, StorageContainer, VirtualDisk  # noqa: E402
from console.services import processes  # noqa: E402
from ngt.models import GuestTools, VMCertificate  # noqa: E402
from tests.waiting import wait_for  # noqa: E402  (scratch_console put the checkout on the path)

TARGET_SECONDS = 10.0
TARGET_CLONES = 1000
CLOUD_CONFIG = ("#cloud-config\npackages: [nginx]\nwrite_files:\n  - path: /etc/motd\n    content: bulk\nruncmd:\n"
                + "".join(f"  - echo step {i} >> /var/log/first-boot.log\n" for i in range(10)))
STAGE_LINE = re.compile(r"(?:batch of (\d+) tasks from \S+|task \S+) \(vm\.clone\) stages: (.*)$")


def make_template(hosts: int, clones: int) -> tuple[VM, str]:
    cluster = Cluster.objects.create(name="bench", virtual_ip="127.0.0.10")
    for n in range(hosts):
        Host.objects.create(cluster=cluster, name=f"bench-{n + 1}", driver_uri="sim://", cpus=64,
                            memory_bytes=1024**4)
    container_dir = SCRATCH / "container"
    storage_container = StorageContainer.objects.create(cluster=cluster, name="default", path=str(container_dir))
    network = Network.objects.create(cluster=cluster, name="lan", cidr="10.8.0.0/16", gateway="10.8.0.1",
                                     pool_start="10.8.0.10", pool_end="10.8.250.250", dns_servers="10.8.0.53")
    template = VM.objects.create(cluster=cluster, name="golden", host=Host.objects.first(), vcpus=1,
                                 memory_bytes=64 * 1024**2, is_template=True, power_state="off", hostname="golden")
    disk = VirtualDisk.objects.create(vm=template, index=0, size_bytes=1024**2, storage_container=storage_container,
                                      file_name=f"vms/{template.uuid}/disk0.raw")
    files.create_sparse(disk.path, disk.size_bytes)
    with open(disk.path, "r+b") as handle:
        handle.write(b"bootsector" * 1000)
    Nic.objects.create(vm=template, index=0, network=network, mac="52:54:00:aa:00:01", ip="10.8.0.10")
    CdRom.objects.create(vm=template, slot=0)
    GuestTools.objects.create(vm=template, enabled=True)  # the agent is in its disk: clones get an identity each
    SimDomain.objects.create(uuid=template.uuid, host_name=template.host.name)
    admin = User.objects.create_superuser("bench", password="unused-bench-password")  # noqa: S106
    token = access.create_token(Actor(user=admin), admin, "bench")[1]
    return template, token








def peak_memory(process: subprocess.Popen) -> int:
    """The largest VmHWM (peak resident set) among the process and its children, in bytes."""
    pids = [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    if children.exists():
        pids += [int(pid) for pid in children.read_text().split()]
    peak = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        peak = max(peak, int(found[1]) * 1024 if found else 0)
    return peak


def request(port: int, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request(method, path, body=json.dumps(body) if body is not None else None,
                       headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, json.loads(data or b"{}")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args) -> dict:
    template, token = make_template(args.hosts, args.clones)
    env = {"FACET_LOG_LEVEL": "INFO"}
    redis = start(processes.redis_command(SCRATCH / "redis.sock"), SCRATCH / "redis.log")
    workers, web = [], None
    # One worker for every host, or one per host (as production runs them, each on its host's queue).
    served = [[host.name] for host in Host.objects.order_by("name")] if args.worker_per_host else [None]
    try:
        wait_for((SCRATCH / "redis.sock").exists, 10, "redis-server")
        worker_logs, web_log = [SCRATCH / f"worker-{n}.log" for n in range(len(served))], SCRATCH / "web.log"
        for names, worker_log in zip(served, worker_logs, strict=True):
            workers.append(start(processes.worker_command(processes.worker_queues(names),
                                                          concurrency=args.concurrency), worker_log, **env))
        port = free_port()
        web = start(processes.web_command(port, workers=1), web_log, **env)
        wait_for(lambda: all("ready." in log.read_text() or worker.poll() is not None
                             for worker, log in zip(workers, worker_logs, strict=True)), 60, "the workers")
        wait_for(lambda: "Booting worker" in web_log.read_text() or web.poll() is not None, 60, "the web process")
        if any(process.poll() is not None for process in [*workers, web]):
            logs = "\n".join(log.read_text()[-2000:] for log in [*worker_logs, web_log])
            raise RuntimeError(f"a process exited:\n{logs}")
        wait_for(lambda: request(port, token, "GET", "/api/v1/")[0] == 200, 30, "the API")
        table = "name,hostname,role\n" + "".join(f",node{n:04},{'db' if n % 10 == 0 else 'web'}\n"
                                                 for n in range(args.clones))
        body = {"count": args.clones, "name_pattern": "web-{n:04}", "per_clone_csv": table, "power_on": True,
                "customization": {"content": CLOUD_CONFIG}}
        path = f"/api/v1/vms/{template.uuid}/bulk-clone/"
        began = time.perf_counter()
        status, plan = request(port, token, "POST", path + "?dry_run=1", body)
        planned = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"the dry run answered {status}: {plan}")
        began = time.perf_counter()
        status, parent = request(port, token, "POST", path, body)
        asked = time.perf_counter() - began
        if status != 202:
            raise RuntimeError(f"the bulk clone answered {status}: {parent}")
        task = Task.objects.get(uuid=parent["uuid"])

        def ended() -> bool:
            task.refresh_from_db()
            return task.ended

        wait_for(ended, 3600, "the bulk clone", interval=0.02)
        took = time.perf_counter() - began
        peaks = {"web": peak_memory(web), "worker": max(peak_memory(worker) for worker in workers)}
        stages = stage_times(worker_logs)
    finally:
        for process in [web, *workers]:
            if process is not None:
                stop(process)
        stop(redis)
    return {"planned": planned, "asked": asked, "took": took, "task": task, "peaks": peaks, "stages": stages,
            "check": check(template, args.clones)}


def stage_times(logs: list[Path]) -> dict[tuple[int, str], list[float]]:
    """Each stage's times in ms, by (clones in the run, stage name): a batch of clones run together logs one
    line, a clone run alone one of its own."""
    stages: dict[tuple[int, str], list[float]] = {}
    for line in (line for log in logs for line in log.read_text().splitlines()):
        found = STAGE_LINE.search(line)
        if found:
            for part in found[2].split(", "):
                name, _, value = part.rpartition(" ")[0].rpartition(" ")
                stages.setdefault((int(found[1] or 1), name), []).append(float(value))
    return stages


def check(template: VM, count: int) -> dict:
    clones = VM.objects.filter(parent=template)
    nics = Nic.objects.filter(vm__parent=template)
    isos = list((SCRATCH / "container" / "vms").glob("*/customization.iso"))
    tools_isos = list((SCRATCH / "container").glob("guest-tools/*.iso"))
    serials = VMCertificate.objects.filter(vm__parent=template).values("serial").distinct().count()
    return {"clones": clones.count(), "on": clones.filter(power_state="on").count(),
            "names": clones.values("name").distinct().count(), "macs": nics.values("mac").distinct().count(),
            "ips": nics.values("ip").distinct().count(), "isos": len(isos), "tools_isos": len(tools_isos),
            "serials": serials,
            "unended": Task.objects.exclude(status__in=Task.ENDED).exclude(children__isnull=False).count(),
            "expected": count}




def report(args, result: dict) -> None:
    task, check_ = result["task"], result["check"]
    children = Task.objects.filter(parent=task)
    first = children.order_by("started_at").values_list("started_at", flat=True).first()
    last = children.order_by("-finished_at").values_list("finished_at", flat=True).first()
    print(f"\nBulk clone: {args.clones} clones of a template with Guest Tools and a cloud-config, power on; "
          f"{args.hosts} sim hosts; "
          f"{'a worker per host' if args.worker_per_host else 'one worker'} with {args.concurrency} threads; "
          "one gunicorn worker; SQLite")
    print(f"machine: {machine()}\n")
    rows = [
        ("dry run answered (the whole plan)", f"{result['planned']:.2f} s"),
        ("request answered 202 (plan + rows + children sent)", f"{result['asked']:.2f} s"),
        ("request to first clone started", f"{(first - task.created_at).total_seconds():.2f} s" if first else "-"),
        ("first clone started to last ended (worker)",
         f"{(last - first).total_seconds():.2f} s" if first and last else "-"),
        ("request to parent ended (end to end)", f"{result['took']:.2f} s"),
        ("clones per second (end to end)", f"{args.clones / result['took']:.1f}"),
        ("parent task", f"{task.status}: {task.message}"),
        ("peak memory, web / worker", f"{result['peaks']['web'] / 1024**2:.0f} / "
                                      f"{result['peaks']['worker'] / 1024**2:.0f} MiB"),
        ("clones / on / names / MACs / IPs", f"{check_['clones']} / {check_['on']} / {check_['names']} / "
                                             f"{check_['macs']} / {check_['ips']}"),
        ("customization ISOs / tools ISOs / serials",
         f"{check_['isos']} / {check_['tools_isos']} / {check_['serials']}"),
        ("tasks not ended", str(check_["unended"])),
    ]
    for label, value in rows:
        print(f"{label:<52}{value:>28}")
    print(f"\n{'stage of a run of the worker':<34}{'clones':>7}{'runs':>6}{'median ms':>11}{'p95 ms':>9}{'total s':>9}")
    for (clones, name), values in result["stages"].items():
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(f"{name:<34}{clones:>7}{len(values):>6}{statistics.median(values):>11.2f}{p95:>9.2f}"
              f"{sum(values) / 1000:>9.2f}")
    ok = all(check_[k] == check_["expected"]
             for k in ("clones", "on", "names", "macs", "ips", "isos", "tools_isos", "serials"))
    print(f"\nresult checked: {'yes' if ok and not check_['unended'] else 'NO'}")
    if args.clones == TARGET_CLONES:
        verdict = "met" if result["took"] <= TARGET_SECONDS else "MISSED"
        print(f"target: {TARGET_CLONES} clones in at most {TARGET_SECONDS:.0f} s: {result['took']:.2f} s, {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clones", type=int, default=TARGET_CLONES)
    parser.add_argument("--concurrency", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--hosts", type=int, default=2, help="sim hosts to spread over (default 2)")
    parser.add_argument("--worker-per-host", action="store_true",
                        help="a worker process per host, on its queue (default: one worker serving every host)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs) and say where")
    args = parser.parse_args()
    try:
        call_command("migrate", verbosity=0)
        print(f"data dir {SCRATCH}; bulk clone of {args.clones} through the API and a real worker ...", flush=True)
        report(args, run(args))
    finally:
        if args.keep:
            print(f"kept {SCRATCH}")
        else:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
