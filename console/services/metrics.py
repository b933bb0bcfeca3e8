"""Usage metrics of VMs and hosts: sampled by each host's worker (one bulk stats call per host), kept raw for
a day and as 5-minute averages for 30 days, read back as series on a fixed time grid where a missing sample is
None (a gap, shown as one), never a zero.

A host's row is the sum of its running VMs: CPU as a share of the host's CPUs, memory, disk and network rates.
A host whose hypervisor does not answer gets no row at all for that interval (a gap)."""

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Avg, BigIntegerField, ExpressionWrapper, F, FloatField, Max, Q
from django.db.models.functions import Cast
from django.utils import timezone

from console.core.drivers import DriverError, get_driver
from console.core.drivers.insight import DomainCounters
from console.core.errors import InvalidRequest

from ..models import VM, Host, MetricSample

log = logging.getLogger(__name__)

RAW, ROLLUP = MetricSample.RAW, MetricSample.ROLLUP
RAW_KEEP = timedelta(days=1)
ROLLUP_KEEP = timedelta(days=30)
FIGURES = ("cpu_percent", "memory_used", "memory_total", "disk_read", "disk_write", "net_rx", "net_tx")
RATES = ("disk_read", "disk_write", "net_rx", "net_tx")
MAX_POINTS = 10_000
# The periods of the charts: (label, span, step).
PERIODS = {"hour": (timedelta(hours=1), RAW), "day": (timedelta(days=1), ROLLUP),
           "month": (timedelta(days=30), 3 * 3600)}


def interval() -> float:
    return settings.FACET_METRICS_INTERVAL_SECONDS


def _counter_list(c: DomainCounters) -> list[int]:
    return [c.cpu_ns, c.disk_read, c.disk_write, c.net_rx, c.net_tx]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _previous(host: Host) -> tuple[int | None, dict[int, list[int]]]:
    """The host's last raw sample: its time (ms), and each VM's counters then."""
    last = (MetricSample.objects.filter(subject=host.uuid, resolution=RAW).order_by("-at_ms")
            .values_list("at_ms", flat=True).first())
    if last is None:
        return None, {}
    rows = MetricSample.objects.filter(host=host, resolution=RAW, at_ms=last, vm__isnull=False)
    return last, dict(rows.values_list("vm_id", "counters"))


def _rates(previous: list[int] | None, now: DomainCounters, seconds: float | None) -> dict:
    """Per-second rates since the previous sample; None each when there is none to compare with (the first
    sample, a gap of more than three intervals, a VM restarted: its counters went back)."""
    current = _counter_list(now)
    if previous is None or not seconds or seconds > 3 * interval() or any(
            c < p for c, p in zip(current, previous, strict=True)):
        return {"cpu_percent": None, **dict.fromkeys(RATES)}
    deltas = [(c - p) / seconds for c, p in zip(current, previous, strict=True)]
    return {"cpu_percent": min(100.0, deltas[0] / 1e9 / now.vcpus * 100),
            **dict(zip(RATES, deltas[1:], strict=True))}


def sample_host(host: Host, now: datetime | None = None) -> int:
    """Sample every running VM of `host` in one driver call; returns the rows written (0 when the hypervisor
    did not answer: that interval stays a gap)."""
    vms = list(VM.objects.filter(host=host, is_template=False).only("id", "uuid", "name", "vcpus", "memory_bytes"))
    try:
        counters = get_driver(host.driver_uri).domain_counters(vms)
    except DriverError as exc:
        log.warning("no metrics from host %s this time: %s", host.name, exc)
        return 0
    now = ms(now or timezone.now())
    last, previous = _previous(host)
    seconds = (now - last) / 1000 if last else None
    rows = []
    for vm in vms:
        if vm.uuid not in counters:
            continue  # not running: nothing to show
        c = counters[vm.uuid]
        rows.append(MetricSample(resolution=RAW, at_ms=now, subject=vm.uuid, host=host, vm=vm,
                                 memory_used=c.memory_used, memory_total=c.memory_total,
                                 counters=_counter_list(c), **_rates(previous.get(vm.id), c, seconds)))
    rows.append(_host_row(host, now, rows))
    MetricSample.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def _host_row(host: Host, now: int, vm_rows: list[MetricSample]) -> MetricSample:
    measured = [row for row in vm_rows if row.cpu_percent is not None]
    if vm_rows and not measured:  # first sample of the VMs: no rates yet
        figures = {"cpu_percent": None, **dict.fromkeys(RATES)}
    else:
        vcpus = {row.vm_id: row.vm.vcpus for row in measured}
        figures = {"cpu_percent": min(100.0, sum(r.cpu_percent * vcpus[r.vm_id] for r in measured) / host.cpus),
                   **{name: sum(getattr(r, name) for r in measured) for name in RATES}}
    return MetricSample(resolution=RAW, at_ms=now, subject=host.uuid, host=host,
                        memory_used=sum(r.memory_used or 0 for r in vm_rows), memory_total=host.memory_bytes,
                        **figures)


def roll_up(now: datetime | None = None) -> int:
    """Average the raw samples of every 5-minute bucket that has ended and not been rolled up yet, and drop
    what is past keeping. Rerunnable: a bucket is rolled up once (the newest rollup marks where to go on)."""
    now = now or timezone.now()
    width = ROLLUP * 1000
    done = MetricSample.objects.filter(resolution=ROLLUP).aggregate(last=Max("at_ms"))["last"]
    bucket = done + width if done else _bucket(ms(now - RAW_KEEP))
    end = _bucket(ms(now))  # the bucket still filling is left for the next run
    written = 0
    while bucket < end:
        raw = MetricSample.objects.filter(resolution=RAW, at_ms__gte=bucket, at_ms__lt=bucket + width)
        rows = raw.values("subject", "host_id", "vm_id").annotate(**{name: Avg(name) for name in FIGURES})
        MetricSample.objects.bulk_create([MetricSample(resolution=ROLLUP, at_ms=bucket, **row) for row in rows],
                                         batch_size=500)
        written += len(rows)
        bucket += width
    MetricSample.objects.filter(resolution=RAW, at_ms__lt=ms(now - RAW_KEEP)).delete()
    MetricSample.objects.filter(resolution=ROLLUP, at_ms__lt=ms(now - ROLLUP_KEEP)).delete()
    return written


def _bucket(at_ms: int) -> int:
    return at_ms - at_ms % (ROLLUP * 1000)


@dataclass
class Series:
    """Points at `since`, `since + step`, ... (the last before `until`), each the average of the samples in
    its step; a figure is None where no sample fell in the step."""

    since: datetime
    step: int
    times: list[datetime]
    figures: dict[str, list[float | None]]


def series(subject, since: datetime, step: int, until: datetime | None = None) -> Series:
    """The averages of `subject` (a VM's or a host's uuid) per `step` seconds from `since`: from the raw
    samples when the step is under 5 minutes (and so `since` within the last day), else from the 5-minute
    averages plus the raw samples of the newest minutes not rolled up yet."""
    until = until or timezone.now()
    if step < interval():
        raise InvalidRequest({"step": [f"at least {interval():g} seconds, the sampling interval"]})
    count = max(1, math.ceil((until - since).total_seconds() / step))  # slots that start before `until`
    if count > MAX_POINTS:
        raise InvalidRequest({"step": [f"{count} points from since to now; make the step longer (at most "
                                       f"{MAX_POINTS} points)"]})
    origin, width = ms(since), step * 1000
    rows = MetricSample.objects.filter(subject=subject, at_ms__gte=origin, at_ms__lt=ms(until))
    if step < ROLLUP:
        if until - since > RAW_KEEP:
            raise InvalidRequest({"step": [f"steps under {ROLLUP} s are kept for a day only; since is further back"]})
        rows = rows.filter(resolution=RAW)
    else:
        rolled = MetricSample.objects.filter(resolution=ROLLUP).aggregate(last=Max("at_ms"))["last"]
        tail = rolled + ROLLUP * 1000 if rolled else origin
        rows = rows.filter(Q(resolution=ROLLUP, at_ms__lt=tail) | Q(resolution=RAW, at_ms__gte=tail))
    # Averaged per step by the database: integer division puts each sample in its step.
    slots = (rows.annotate(slot=ExpressionWrapper((F("at_ms") - origin) / width, output_field=BigIntegerField()))
             .values("slot").annotate(**{name: Cast(Avg(name), FloatField()) for name in FIGURES}).order_by()
             .values_list("slot", *FIGURES))
    averaged = [row for row in _fetch_plain(slots) if 0 <= row[0] < count]
    figures = {}
    for column, name in enumerate(FIGURES, start=1):
        figures[name] = [None] * count
        for row in averaged:
            figures[name][row[0]] = row[column]
    return Series(since, step, [since + timedelta(seconds=step * i) for i in range(count)], figures)


def _fetch_plain(queryset) -> list[tuple]:
    """The rows as the database driver gives them. A 30-day series at 5-minute steps is 8,640 rows of eight
    numbers: Django's per-value converters took more time than the query. Every figure is cast to a float in
    SQL, so both backends give floats (PostgreSQL would give an integer column's average as a decimal)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def period_series(subject, period: str) -> Series:
    if period not in PERIODS:
        raise InvalidRequest({"period": [f"choose one of {', '.join(PERIODS)}"]})
    span, step = PERIODS[period]
    now = timezone.now()
    return series(subject, now - span, step, now)


def top_vms(limit: int = 10) -> list[MetricSample]:
    """The VMs using the most CPU in the newest raw sample of each host (within the last three intervals)."""
    recent = timezone.now() - timedelta(seconds=3 * interval())
    latest = (MetricSample.objects.filter(resolution=RAW, at_ms__gte=ms(recent), vm__isnull=True)
              .values("host_id").annotate(last=Max("at_ms")))
    times = [row["last"] for row in latest]
    return list(MetricSample.objects.filter(resolution=RAW, at_ms__in=times, vm__isnull=False,
                                            cpu_percent__isnull=False)
                .select_related("vm", "host").order_by("-cpu_percent")[:limit])


RELATIVE = {"m": 60, "h": 3600, "d": 86400}


def parse_window(since: str | None, step: str | None, now: datetime | None = None) -> tuple[datetime, int, datetime]:
    """`since`: an ISO 8601 time, or a span back from now such as `90m`, `24h`, `30d` (default `1h`); `step`:
    seconds per point (default: the sampling interval up to a day back, 5 minutes up to a week, else an hour)."""
    now = now or timezone.now()
    since = (since or "1h").strip()
    if since[:-1].isdigit() and since[-1:] in RELATIVE:
        start = now - timedelta(seconds=int(since[:-1]) * RELATIVE[since[-1]])
    else:
        try:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest({"since": ["give an ISO 8601 time, or a span such as 90m, 24h or 30d"]}) from None
        if timezone.is_naive(start):
            start = timezone.make_aware(start, timezone.utc)
    if start >= now:
        raise InvalidRequest({"since": ["must be in the past"]})
    if now - start > ROLLUP_KEEP:
        raise InvalidRequest({"since": [f"metrics are kept {ROLLUP_KEEP.days} days; give a later time"]})
    if step in (None, ""):
        span = now - start
        seconds = int(interval()) if span <= RAW_KEEP else ROLLUP if span <= timedelta(days=7) else 3600
    else:
        if not str(step).isdigit():
            raise InvalidRequest({"step": ["give whole seconds, such as 20, 300 or 3600"]})
        seconds = int(step)
    return start, seconds, now
