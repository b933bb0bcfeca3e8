"""Image formats (issue 14, item 1): an image's format is found once, by `qemu-img info`, when the file
arrives; a file that would make QEMU read another file (a backing file, an external data file) or of any
format but raw and qcow2 is refused; every later read names the recorded format, so bytes a guest writes
into its raw disk never make QEMU open a host file. Real qemu-img and libvirt's in-process test hypervisor."""

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring

from console.core.errors import InvalidRequest
from console.core.models import Task
from console.models import VM, Host, Image
from console.services import images, vms

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img (make setup installs it)")

MiB = 1024**2
URI = "test:///default"
SECRET = b"-----BEGIN PRIVATE KEY----- the CA key of this console"


@pytest.fixture
def host_secret(tmp_path) -> Path:
    """A file of the console's host that no guest may read (as the CA key or the database would be)."""
    path = tmp_path / "ca_key"
    path.write_bytes(SECRET.ljust(MiB, b"\0"))
    return path


@pytest.fixture
def libvirt_hosts(cluster):
    Host.objects.filter(cluster=cluster).update(driver_uri=URI)
    yield
    connection = libvirt.open(URI)  # test:///default keeps its domains for the life of the process
    for vm in VM.objects.all():
        domain = connection.lookupByUUIDString(str(vm.uuid)) if str(vm.uuid) in {
            d.UUIDString() for d in connection.listAllDomains(0)} else None
        if domain is not None:
            domain.undefine()


def qemu_img(*arguments: str) -> None:
    subprocess.run(["qemu-img", *arguments], check=True, capture_output=True)


def upload(actor, path: Path, name: str = "cloud", kind: str = "disk") -> Task:
    data = path.read_bytes()
    return images.receive_upload(actor, io.BytesIO(data), name=name, kind=kind, content_length=len(data))


def container_files(cluster) -> set[str]:
    root = Path(cluster.storage_containers.get().path)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def make_hostile(kind: str, directory: Path, host_secret: Path) -> Path:
    path = directory / f"{kind}.img"
    if kind == "backing-file":
        qemu_img("create", "-q", "-f", "qcow2", "-b", str(host_secret), "-F", "raw", str(path))
    elif kind == "relative-backing-file":
        qemu_img("create", "-q", "-f", "qcow2", "-b", "../../ca_key", "-F", "raw", "-u", str(path), "1M")
    elif kind == "data-file":
        qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={directory / 'data.raw'}", str(path), "1M")
    elif kind == "vmdk":
        qemu_img("create", "-q", "-f", "vmdk", str(path), "1M")
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("backing-file", "names a backing file"),
    ("relative-backing-file", "names a backing file"),
    ("data-file", "external data file"),
    ("vmdk", "format is 'vmdk'"),
])
def test_an_upload_that_would_read_other_files_is_refused(cluster, actor, tmp_path, host_secret, kind, message):
    before = container_files(cluster)
    hostile = make_hostile(kind, tmp_path, host_secret)
    with pytest.raises(InvalidRequest) as refused:
        upload(actor, hostile)
    assert message in str(refused.value.errors["file"])
    assert not Image.objects.filter(name="cloud").exists()
    assert container_files(cluster) == before
    assert Task.objects.get(kind="image.upload").status == Task.Status.FAILED


def test_the_api_answers_a_backing_file_upload_with_a_400(cluster, admin, tmp_path, host_secret):
    from tests.conftest import client_for

    hostile = make_hostile("backing-file", tmp_path, host_secret)
    response = client_for(admin).post("/api/v1/images/upload/?name=cloud&kind=disk", data=hostile.read_bytes(),
                                      content_type="application/octet-stream")
    assert response.status_code == 400
    assert "backing file" in response.json()["file"][0]


def test_a_clean_qcow2_is_recorded_as_qcow2_and_copied_as_qcow2(cluster, actor, tmp_path, libvirt_hosts):
    raw, source = tmp_path / "cloud.raw", tmp_path / "cloud.qcow2"
    with open(raw, "wb") as handle:
        handle.truncate(4 * MiB)
        handle.seek(MiB)
        handle.write(b"aaaa")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(source))
    upload(actor, source)
    image = Image.objects.get(name="cloud")
    assert image.disk_format == "qcow2"
    task = vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=256 * MiB, image=image))
    vms.run_create(task, vms.Progress(task))
    disk = VM.objects.get(name="web-1").disks.get()
    with open(disk.path, "rb") as handle:  # the guest's data, not the qcow2 file's bytes
        handle.seek(MiB)
        assert handle.read(4) == b"aaaa"


def test_an_iso_must_read_as_raw(cluster, actor, tmp_path):
    """A file both ISO 9660 and qcow2 (its qcow2 header at 0, CD001 at 32 KiB) is not taken as an ISO."""
    polyglot = tmp_path / "both.iso"
    qemu_img("create", "-q", "-f", "qcow2", str(polyglot), "1M")
    with open(polyglot, "r+b") as handle:
        handle.seek(16 * 2048 + 1)
        handle.write(b"CD001")
    with pytest.raises(InvalidRequest, match="reads as qcow2"):
        upload(actor, polyglot, name="iso", kind="iso")


def test_a_guest_written_qcow2_header_is_never_followed(cluster, actor, tmp_path, host_secret, libvirt_hosts):
    """A guest writes, into its raw disk, a qcow2 header whose backing file is a host file: cloning the VM
    copies the guest's bytes (read as raw), and the domain reads the disk as raw; the host file is never read."""
    task = vms.request_create_vm(actor, vms.VMSpec(name="guest", vcpus=1, memory_bytes=256 * MiB,
                                                   disk_sizes=[MiB]))
    vms.run_create(task, vms.Progress(task))
    guest = VM.objects.get(name="guest")
    disk = guest.disks.get()
    evil = make_hostile("backing-file", tmp_path, host_secret)
    with open(disk.path, "r+b") as handle:  # what a root user in the guest can do to /dev/vda
        handle.write(evil.read_bytes())

    clone = vms.request_clone(actor, guest, "copy")
    vms.run_clone(clone, vms.Progress(clone))
    copy = VM.objects.get(name="copy").disks.get().path
    assert SECRET not in copy.read_bytes()
    assert copy.read_bytes()[:4] == b"QFI\xfb"  # the guest's own bytes, copied as they are

    domain = fromstring(libvirt.open(URI).lookupByUUIDString(str(guest.uuid)).XMLDesc(0))
    assert [d.get("type") for d in domain.iter("driver") if d.get("name") == "qemu"][0] == "raw"
