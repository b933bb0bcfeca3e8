"""Shared fixtures: a small cluster on the sim driver whose storage container is a temporary directory,
users of every role, and a way to run queued tasks in-process (integration tests use a real worker)."""

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError
from rest_framework.test import APIClient

from console.core import access
from console.core.actors import Actor
from console.core.drivers import files
from console.core.models import SimDomain, Task
from console.core.tasks.running import execute
from console.models import VM, Cluster, Host, Image, Network, StorageContainer
from console.services import vms
from console.services.demo import demo_iso_bytes
from tests.browser import browser, page, screenshots  # noqa: F401  (shared fixtures)
from tests.realparts import celery_processes, pytest_runtest_makereport, redis_url  # noqa: F401

MiB = 1024**2
GiB = 1024**3


@pytest.fixture
def cluster(db, tmp_path):
    cluster = Cluster.objects.create(name="test", virtual_ip="127.0.0.10")
    container_dir = tmp_path / "container"
    container_dir.mkdir()
    storage_container = StorageContainer.objects.create(cluster=cluster, name="default", path=str(container_dir))
    for number in (1, 2):
        Host.objects.create(cluster=cluster, name=f"host-{number}", address=f"127.0.0.{number + 1}",
                            cpus=8, memory_bytes=16 * GiB)
    Network.objects.create(cluster=cluster, name="lan", vlan=10, cidr="10.0.0.0/24", gateway="10.0.0.1",
                           pool_start="10.0.0.100", pool_end="10.0.0.102")
    disk = storage_container.resolve("images/base.raw")
    files.create_sparse(disk, 8 * MiB)
    with open(disk, "r+b") as handle:  # some data, so a full copy has something to copy
        handle.write(b"bootsector" * 100)
    Image.objects.create(cluster=cluster, name="base-disk", kind="disk", storage_container=storage_container,
                         file_name="images/base.raw", size_bytes=8 * MiB)
    iso = storage_container.resolve("images/tools.iso")
    iso.write_bytes(demo_iso_bytes())
    Image.objects.create(cluster=cluster, name="rescue-iso", kind="iso", storage_container=storage_container,
                         file_name="images/tools.iso", size_bytes=iso.stat().st_size)
    return cluster


def make_user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password="correct-horse-battery")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def admin(db):
    return make_user("alice", access.ADMIN)


@pytest.fixture
def operator(db):
    return make_user("oscar", access.OPERATOR)


@pytest.fixture
def viewer(db):
    return make_user("vera", access.VIEWER)


@pytest.fixture
def actor(admin):
    return Actor(user=admin, source_address="127.0.0.1")


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        _, key = access.create_token(Actor(user=user), user, "test")
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api(admin):
    return client_for(admin)


@pytest.fixture
def vm(cluster, actor, run_tasks):
    """One created, powered-off VM named web-1."""
    vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=GiB))
    run_tasks()
    return VM.objects.get(name="web-1")


@pytest.fixture
def running_vm(vm):
    """web-1 of `vm`, running (in the console and on the sim hypervisor) without a power task."""
    VM.objects.filter(pk=vm.pk).update(power_state="on")
    SimDomain.objects.filter(uuid=vm.uuid).update(power_state="on")
    vm.refresh_from_db()
    return vm


@pytest.fixture
def facet_as_admin(monkeypatch, tmp_path, capsys, live_server, admin, cluster):
    """Run the `facet` CLI against the live test console with an Admin's token; tasks stay queued (no
    broker here: `run_tasks` runs them). Answers (exit code, stdout, stderr)."""
    monkeypatch.setattr("console.core.tasks.sending.send", lambda task: None)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("FACET_URL", live_server.url)
    monkeypatch.setenv("FACET_TOKEN", access.create_token(Actor(user=admin), admin, "cli")[1])

    return cli_runner(capsys)


def cli_runner(capsys):
    """Run the `facet` CLI in-process; answer (exit code, stdout, stderr)."""
    from console.cli import main as cli

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def run_tasks():
    """Run every queued task in-process, as a worker would, until none is left; returns them."""

    def run() -> list[Task]:
        done = []
        while task := Task.objects.filter(status=Task.Status.QUEUED, children__isnull=True).order_by("id").first():
            execute(str(task.uuid), task.attempts)
            task.refresh_from_db()
            done.append(task)
        return done

    return run


@pytest.fixture(autouse=True)
def row_locks_need_a_transaction(monkeypatch):
    """`select_for_update()` outside a transaction is refused, as PostgreSQL refuses it: SQLite has no row locks
    and lets the mistake pass, which once failed every customized clone on PostgreSQL only. (Inside a plain
    django_db test everything runs in the test's transaction; transactional tests and tasks run in autocommit.)"""
    lock = QuerySet.select_for_update

    def refused_outside_a_transaction(queryset, *args, **kwargs):
        if transaction.get_autocommit(using=queryset.db):
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        return lock(queryset, *args, **kwargs)
    monkeypatch.setattr(QuerySet, "select_for_update", refused_outside_a_transaction)


@pytest.fixture(autouse=True)
def test_settings(settings, tmp_path):
    """Fast password hashing, and a data directory of the test's own (the demo seed writes disk files)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def disk_vm(cluster, actor, run_tasks):
    """web-1, a VM made from the cluster's disk image (its disk holds data), created by its task."""
    vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=256 * MiB,
                                            image=Image.objects.get(name="base-disk")))
    run_tasks()
    return VM.objects.get(name="web-1")
