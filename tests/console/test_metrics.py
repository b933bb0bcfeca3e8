"""Metrics: sampling the sim driver's VMs (one driver call per host), rates from two samples, roll-ups, gaps
as gaps, the API, the VM page's charts and the dashboard's top VMs."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console.core.drivers import sim_insight
from console.core.drivers.sim import SimDriver
from console.core.units import iec
from console.models import Host, MetricSample
from console.services import metrics
from tests.conftest import client_for


@pytest.fixture(autouse=True)
def sample_clock(monkeypatch):
    """The sim's figures are of the instant each test samples at, not of the wall clock."""
    def sample_host(host, when):
        monkeypatch.setattr(sim_insight, "clock", when.timestamp)
        return metrics_sample_host(host, when)

    metrics_sample_host = metrics.sample_host
    monkeypatch.setattr(metrics, "sample_host", sample_host)


def test_two_samples_give_plausible_rates_from_one_driver_call_per_host(running_vm, monkeypatch):
    calls = []
    original = SimDriver.domain_counters
    monkeypatch.setattr(SimDriver, "domain_counters", lambda self, vms: calls.append(len(vms)) or original(self, vms))
    host = running_vm.host
    start = timezone.now() - timedelta(seconds=40)
    assert metrics.sample_host(host, start) == 2  # the VM and its host
    first = MetricSample.objects.get(subject=running_vm.uuid)
    assert first.cpu_percent is None and first.memory_used > 0  # no rate from a single sample
    metrics.sample_host(host, start + timedelta(seconds=20))
    sample = MetricSample.objects.filter(subject=running_vm.uuid).latest("at_ms")
    assert 1 <= sample.cpu_percent <= 50
    assert sample.disk_read > 0 and sample.net_rx > 0 and 0 < sample.memory_used < running_vm.memory_bytes
    host_row = MetricSample.objects.filter(subject=host.uuid).latest("at_ms")
    assert host_row.cpu_percent == pytest.approx(sample.cpu_percent * running_vm.vcpus / host.cpus)
    assert calls == [1, 1]  # one call per host and sample, whatever the number of VMs


def test_a_host_that_does_not_answer_leaves_a_gap_not_zeros(running_vm, client, viewer):
    host = running_vm.host
    start = timezone.now() - timedelta(minutes=5)
    for index in range(4):
        if index == 2:
            Host.objects.filter(pk=host.pk).update(driver_uri="test:///nonexistent/host.xml")
            host.refresh_from_db()
            assert metrics.sample_host(host, start + timedelta(seconds=20 * index)) == 0
            Host.objects.filter(pk=host.pk).update(driver_uri="sim://")
            host.refresh_from_db()
        else:
            metrics.sample_host(host, start + timedelta(seconds=20 * index))
    series = metrics.series(running_vm.uuid, start, 20, start + timedelta(seconds=80))
    assert series.figures["memory_used"][2] is None  # the host down: a gap
    assert series.figures["memory_used"][1] and series.figures["memory_used"][3]
    assert series.figures["cpu_percent"][0] is None and series.figures["cpu_percent"][1] > 0
    # The API says null there, and the VM page draws the line in two pieces.
    answer = client_for(viewer).get(f"/api/v1/vms/{running_vm.uuid}/metrics/",
                                    {"since": start.isoformat(), "step": "20"}).json()
    assert answer["memory_used"][2] is None and answer["memory_used"][1] > 0
    client.force_login(viewer)
    panel = client.get(reverse("vm-performance", args=[running_vm.uuid]) + "?period=hour").content.decode()
    memory = panel.split('data-chart="Memory"')[1].split("</figure>")[0]
    assert memory.count('class="series series-1"') == 2


def test_roll_ups_average_five_minutes_and_drop_what_is_past_keeping(running_vm):
    host = running_vm.host
    now = timezone.now()
    bucket = datetime.fromtimestamp(metrics._bucket(metrics.ms(now)) / 1000, tz=UTC) - timedelta(minutes=10)
    for index in range(15):  # 5 minutes of raw samples
        metrics.sample_host(host, bucket + timedelta(seconds=20 * index))
    MetricSample.objects.create(resolution=metrics.RAW, at_ms=metrics.ms(now - timedelta(days=2)),
                                subject=running_vm.uuid, host=host, vm=running_vm, cpu_percent=5)
    assert metrics.roll_up(now) >= 2
    rolled = MetricSample.objects.get(resolution=metrics.ROLLUP, subject=running_vm.uuid, at_ms=metrics.ms(bucket))
    raw = MetricSample.objects.filter(resolution=metrics.RAW, subject=running_vm.uuid, at_ms__gte=metrics.ms(bucket),
                                      at_ms__lt=metrics.ms(bucket + timedelta(minutes=5)), cpu_percent__isnull=False)
    assert rolled.cpu_percent == pytest.approx(sum(r.cpu_percent for r in raw) / raw.count())
    day_ago = metrics.ms(now - timedelta(days=1))
    assert not MetricSample.objects.filter(at_ms__lt=day_ago, resolution=metrics.RAW).exists()
    assert metrics.roll_up(now) == 0  # rerun: nothing twice
    series = metrics.series(running_vm.uuid, bucket, 300, bucket + timedelta(minutes=5))
    assert series.figures["cpu_percent"] == [pytest.approx(rolled.cpu_percent)]


@pytest.mark.parametrize(("query", "field"), [
    ({"since": "yesterday"}, "since"), ({"since": "45d"}, "since"), ({"step": "ten"}, "step"),
    ({"since": "1h", "step": "5"}, "step"), ({"since": "2d", "step": "20"}, "step"),
    ({"since": "29d", "step": "60"}, "step")])
def test_bad_metrics_queries_name_their_field(running_vm, viewer, query, field):
    response = client_for(viewer).get(f"/api/v1/vms/{running_vm.uuid}/metrics/", query)
    assert response.status_code == 400 and field in response.json()


def test_metrics_api_defaults_to_the_last_hour_and_404s_an_unknown_vm(running_vm, viewer):
    client = client_for(viewer)
    answer = client.get(f"/api/v1/vms/{running_vm.uuid}/metrics/").json()
    assert answer["step"] == 20 and len(answer["time"]) == 180 and set(answer["cpu_percent"]) == {None}
    assert client.get("/api/v1/vms/00000000-0000-0000-0000-000000000000/metrics/").status_code == 404


def test_dashboard_shows_host_charts_and_the_top_vms(running_vm, client, viewer):
    now = timezone.now()
    metrics.sample_host(running_vm.host, now - timedelta(seconds=20))
    metrics.sample_host(running_vm.host, now)
    client.force_login(viewer)
    page = client.get(reverse("dashboard")).content.decode()
    top = page.split('id="top-vms"')[1].split("</section>")[0]
    assert "web-1" in top and " %" in top
    shown = metrics.top_vms()[0]  # its disk and network rates, read plus written and received plus sent
    assert f"{iec(shown.disk_read + shown.disk_write)}/s" in top and f"{iec(shown.net_rx + shown.net_tx)}/s" in top
    assert 'data-chart="host-1 CPU"' in page


def test_the_vm_page_has_the_performance_panel_and_the_console_tab(running_vm, client, viewer):
    client.force_login(viewer)
    page = client.get(reverse("vm-detail", args=[running_vm.uuid])).content.decode()
    assert reverse("vm-performance", args=[running_vm.uuid]) in page
    assert reverse("vm-console", args=[running_vm.uuid]) in page
    for period in ("hour", "day", "month"):
        panel = client.get(reverse("vm-performance", args=[running_vm.uuid]), {"period": period})
        assert panel.status_code == 200 and panel.content.count(b"<figure") == 4
