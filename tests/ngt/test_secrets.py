"""A VM's private key exists only inside its tools ISO: not in the database, the data directory, the storage
container beside the ISO, the task's params (the Celery message) or the worker's log."""

import base64
import io
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from console.core.models import Task
from ngt.services import guest_tools
from tests.integration.test_worker import wait_until_ended
from tests.ngt.conftest import iso_file


def key_traces(iso: Path) -> list[bytes]:
    """What the key would look like wherever it leaked: PEM lines, DER, base64 and hex of DER and scalar."""
    pem = iso_file(iso, "config/client.key")
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    return [*body, der, scalar, base64.b64encode(der), der.hex().encode(), scalar.hex().encode(),
            base64.b64encode(scalar)]


def leaks(traces: list[bytes], blob: bytes) -> list[bytes]:
    return [trace[:16] for trace in traces if trace in blob]


def files_outside(iso: Path, *roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and p != iso]


def database_bytes() -> bytes:
    dump = io.StringIO()
    call_command("dumpdata", "auth", "console", "ngt", stdout=dump)
    name = Path(connection.settings_dict["NAME"])
    # The raw SQLite files too (deleted rows linger in them), read by another process: closing a descriptor of
    # the database file in this one would drop the POSIX locks SQLite holds on it.
    files = [str(p) for p in (name, name.with_name(name.name + "-wal")) if p.is_file()]
    raw = subprocess.run(["cat", *files], check=True, capture_output=True).stdout if files else b""
    return dump.getvalue().encode() + raw


def test_the_private_key_is_only_in_the_iso(vm, actor, run_tasks):
    task = guest_tools.request_mount(actor, vm)
    run_tasks()
    iso = Path(vm.cdroms.get(purpose="guest-tools").iso_path)
    traces = key_traces(iso)
    assert leaks(traces, iso.read_bytes())  # the search finds it where it is
    assert not leaks(traces, database_bytes())
    for path in files_outside(iso, Path(settings.DATA_DIR), Path(vm.cluster.storage_containers.get().path)):
        assert not leaks(traces, path.read_bytes()), path
    task.refresh_from_db()
    assert not leaks(traces, repr(task.params).encode() + task.message.encode())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_a_real_worker_the_key_is_not_in_its_log(cluster, actor, celery_processes):
    from console.models import VM
    from console.services import vms

    celery_processes.worker(FACET_LOG_LEVEL="DEBUG")
    created = vms.request_create_vm(actor, vms.VMSpec(name="logged", vcpus=1, memory_bytes=1024**3))
    assert wait_until_ended(created).status == "succeeded", created.error
    vm = VM.objects.get(name="logged")
    task = guest_tools.request_mount(actor, vm)
    assert wait_until_ended(task).status == "succeeded", task.error
    iso = Path(vm.cdroms.get(purpose="guest-tools").iso_path)
    traces = key_traces(iso)
    logs = b"".join(p.read_bytes() for p in celery_processes.log_dir.glob("*.log"))
    assert task.celery_id and task.celery_id.encode() in logs  # this worker ran the mount
    assert not leaks(traces, logs)
    assert not leaks(traces, database_bytes())
    for path in files_outside(iso, Path(settings.DATA_DIR), Path(vm.cluster.storage_containers.get().path)):
        assert not leaks(traces, path.read_bytes()), path
    assert Task.objects.filter(kind="ngt.mount", status="succeeded").count() == 1
