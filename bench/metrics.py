"""Metrics: what sampling 1,000 sim VMs every 20 s costs, and how fast a 30-day chart answers.

    .venv/bin/python bench/metrics.py [--vms 1000] [--rounds 30] [--history-vms 100]

Self-contained: a scratch data directory with the embedded SQLite database, 1,000 running sim VMs on one host.
Sampling: `--rounds` samples of the host, 20 s apart on the sim's clock (so the rates are real rates), with the
5-minute roll-up run every 15 samples as beat runs it; the CPU time this process spends per round (driver call,
rate arithmetic, the rows written) against the 20 s interval is the share of one core. Chart: 30 days of
5-minute averages for `--history-vms` VMs (the chart VM among them, so the index holds other VMs' rows too),
then the VM page's month chart (3-hour steps) and the API's densest 30-day query (5-minute steps) timed 20 times
each. Targets (from the issue): under 5 % of one core; at most 50 ms. A miss is reported, not an error."""

import argparse
import statistics
import time
from datetime import timedelta

from scratch import scratch_console  # noqa: E402  (bench/ is the script's directory)

SCRATCH = scratch_console("facet-bench-metrics-", FACET_LOG_LEVEL="WARNING")

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from console.core.drivers import sim_insight  # noqa: E402
from console.core.models import SimDomain  # noqa: E402
from console.models import VM, Cluster, Host, MetricSample  # noqa: E402
from console.services import metrics  # noqa: E402

CORE_SHARE_TARGET = 5.0
QUERY_TARGET_MS = 50.0


def make_vms(count: int) -> Host:
    cluster = Cluster.objects.create(name="bench", virtual_ip="127.0.0.10")
    host = Host.objects.create(cluster=cluster, name="bench-host", driver_uri="sim://", cpus=128,
                               memory_bytes=4 * 1024**4)
    vms = VM.objects.bulk_create(
        VM(cluster=cluster, name=f"vm-{n:05d}", host=host, power_state="on", vcpus=2, memory_bytes=4 * 1024**3)
        for n in range(count))
    SimDomain.objects.bulk_create(SimDomain(uuid=vm.uuid, host_name=host.name, power_state="on") for vm in vms)
    return host


def sampling_cost(host: Host, rounds: int) -> tuple[float, float]:
    """(mean CPU seconds per round, the share of one core at one round per 20 s)."""
    start = timezone.now() - timedelta(seconds=20 * rounds)
    spent = []
    for index in range(rounds):
        when = start + timedelta(seconds=20 * index)
        sim_insight.clock = when.timestamp
        began = time.process_time()
        metrics.sample_host(host, when)
        if index % 15 == 14:
            metrics.roll_up(when)
        spent.append(time.process_time() - began)
    mean = statistics.mean(spent[1:])  # the first round has no rates to work out
    return mean, 100 * mean / metrics.interval()


def fill_history(host: Host, vms: list[VM]) -> None:
    now = timezone.now()
    first = metrics._bucket(metrics.ms(now - timedelta(days=30)))
    buckets = (metrics.ms(now) - first) // (metrics.ROLLUP * 1000)
    for vm in vms:
        MetricSample.objects.bulk_create(
            (MetricSample(resolution=metrics.ROLLUP, at_ms=first + metrics.ROLLUP * 1000 * i,
                          subject=vm.uuid, host=host, vm=vm, cpu_percent=(i * 7) % 100, memory_used=2 * 1024**3,
                          memory_total=4 * 1024**3, disk_read=1e5, disk_write=5e4, net_rx=2e4, net_tx=1e4)
             for i in range(buckets) if i % 500 != 7),  # a few holes, as a host down leaves
            batch_size=2000)


def query_ms(function, times: int = 20) -> tuple[float, float]:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        function()
        samples.append(1000 * (time.perf_counter() - began))
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--history-vms", type=int, default=100)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    host = make_vms(args.vms)
    per_round, core_share = sampling_cost(host, args.rounds)
    rows = MetricSample.objects.count()
    print(f"sampling {args.vms} sim VMs: {1000 * per_round:.0f} ms CPU per round, {core_share:.2f} % of one core "
          f"at one round per {metrics.interval():g} s (target < {CORE_SHARE_TARGET:g} %): "
          f"{'met' if core_share < CORE_SHARE_TARGET else 'MISSED'}; {rows} rows written")
    chart_vms = list(VM.objects.order_by("name")[: args.history_vms])
    began = time.monotonic()
    fill_history(host, chart_vms)
    print(f"history: 30 days of 5-minute averages for {len(chart_vms)} VMs, "
          f"{MetricSample.objects.filter(resolution=metrics.ROLLUP).count()} rows "
          f"({time.monotonic() - began:.0f} s to write)")
    vm = chart_vms[len(chart_vms) // 2]
    for label, function in (
            ("the VM page's month chart (3 h steps)", lambda: metrics.period_series(vm.uuid, "month")),
            ("30 days at 5-minute steps (the API's densest)",
             lambda: metrics.series(vm.uuid, timezone.now() - timedelta(days=30) + timedelta(seconds=1), 300))):
        median, worst = query_ms(function)
        print(f"{label}: median {median:.1f} ms, max {worst:.1f} ms (target <= {QUERY_TARGET_MS:g} ms): "
              f"{'met' if worst <= QUERY_TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
