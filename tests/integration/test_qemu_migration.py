"""Issue 19: a running VM leaves a host in maintenance by a real live migration, from this machine's libvirtd
(`qemu:///system`, host A) to a second libvirtd on the same machine that believes it is another host (B):
- B runs in a network namespace of its own, reached over a veth pair at its own address with `qemu+tls://`
  (a CA, server and client certificates made here; the client's through the URI's `pkipath`), the transport
  production uses;
- and in a mount namespace of its own where libvirt's runtime, state, cache and configuration directories are
  B's: its sockets, its virtlogd, its domain definitions, a `host_uuid` of its own (libvirt refuses to migrate
  to a host with the migrating host's UUID) and `migration_host` set to its address (else QEMU's incoming
  migration would be announced by this machine's hostname, which resolves to 127.0.0.1);
- the storage container is a directory both see at one path, mounted through a FUSE pass-through (bindfs)
  whose type reads `fuse.glusterfs`: libvirt 9 refuses a live migration unless every disk is on a file system
  it knows to be shared (NFS, GlusterFS, CephFS, GFS2, ...; "Unsafe migration: Migration without shared
  storage is unsafe" on ext4), and on one machine the directory is shared for real;
- /var/log/libvirt stays common, so the domain's log (where QEMU's monitor answers qemu-io) is one file.
The VM has no operating system (firmware waiting for a boot device, TCG); the test writes patterns into its
running disk through QEMU's monitor before the move and reads them back on B; a stopped VM moves along by its
definition. Needs root; about 8 s."""

import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from console.core.drivers import get_driver
from console.core.models import Task
from console.core.tasks import sending
from console.models import VM, Host
from console.services import hosts, power, vms
from tests.conftest import client_for
from tests.integration.conftest import GiB, answers, domain_name, file_io, holds, live_disk, monitor_io, run, write
from tests.realparts import wait_for

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network and mount namespaces, a FUSE mount"),
]
MiB = 1024**2
# Host B's libvirt directories, each replaced in its mount namespace by one of its own.
PRIVATE_DIRS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "cache": "/var/cache/libvirt",
                "etc": "/etc/libvirt"}
# Run in B's namespaces: its directories over libvirt's, its virtlogd, then its libvirtd listening for TLS.
DAEMONS = """set -e
for pair in {mounts}; do mount --bind "${{pair%%:*}}" "${{pair#*:}}"; done
virtlogd --pid-file /run/libvirt/virtlogd.pid &
exec libvirtd --listen --pid-file /run/libvirt/libvirtd.pid
"""


@pytest.fixture
def qemu_dir():
    """The storage container's directory (`qemu_cluster` puts it in `container/`): a FUSE view of `shared/`
    that libvirt takes for GlusterFS, so that it lets a disk there migrate live."""
    if not shutil.which("bindfs"):
        pytest.fail("bindfs is not installed (make test-system-packages installs it)")
    directory = Path(tempfile.mkdtemp(prefix="facet-migrate-", dir="/var/tmp"))
    directory.chmod(0o755)
    (directory / "shared").mkdir()
    (directory / "container").mkdir()
    subprocess.run(["bindfs", "-o", "allow_other,subtype=glusterfs", str(directory / "shared"),
                    str(directory / "container")], check=True)
    yield directory
    subprocess.run(["umount", str(directory / "container")], check=True)
    shutil.rmtree(directory)


def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                issuer_key: ec.EllipticCurvePrivateKey, usage: x509.ObjectIdentifier | None = None,
                address: ipaddress.IPv4Address | None = None) -> x509.Certificate:
    """A certificate signed by `issuer` (itself when None): a CA, or a leaf for `usage` naming `address`."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).public_key(key.public_key())
               .issuer_name(issuer.subject if issuer else name).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if address:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(address)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> None:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        path.chmod(0o600)


def make_certificates(server: Path, client: Path, address: ipaddress.IPv4Address) -> None:
    """B's libvirtd's CA, key and certificate (for its address) in `server`; a client's in `client`, under the
    names libvirt's client looks for in a URI's `pkipath`."""
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("facet test CA", ca_key, None, ca_key)
    for directory in (server, client):
        directory.mkdir(parents=True)
        write_pem(directory / "cacert.pem", ca)
    write_pem(server / "servercert.pem",
              certificate("host-b", server_key, ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, address))
    write_pem(server / "serverkey.pem", server_key)
    write_pem(client / "clientcert.pem",
              certificate("host-a", client_key, ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH))
    write_pem(client / "clientkey.pem", client_key)


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture
def host_b_uri(libvirtd, qemu_dir):
    """A second libvirtd in network and mount namespaces of its own (see the module's docstring); answers its
    `qemu+tls://` URI. Afterwards whatever domain is left there is gone, and so are the daemons, the
    namespace and its veth pair."""
    tag = os.getpid() % 100000
    namespace, outside, inside = f"fmig{tag}", f"fmig{tag}a", f"fmig{tag}b"
    subnet = ipaddress.ip_network(f"10.254.{tag % 250}.0/30")
    address_a, address_b = list(subnet.hosts())
    home = Path(tempfile.mkdtemp(prefix="facet-host-b-", dir="/var/tmp"))
    for name in PRIVATE_DIRS:
        (home / name).mkdir()
    shutil.copytree("/var/cache/libvirt/qemu", home / "cache/qemu")  # QEMU's capabilities: no second probe
    make_certificates(home / "etc/pki", home / "client", address_b)
    (home / "etc/libvirtd.conf").write_text(
        f'listen_tls = 1\nlisten_tcp = 0\nlisten_addr = "{address_b}"\nhost_uuid = "{uuid.uuid4()}"\n'
        + "".join(f'{key} = "/etc/libvirt/pki/{name}"\n' for key, name in (
            ("ca_file", "cacert.pem"), ("cert_file", "servercert.pem"), ("key_file", "serverkey.pem"))))
    (home / "etc/qemu.conf").write_text(f'migration_host = "{address_b}"\n')
    daemons = None
    try:
        sh("ip", "netns", "add", namespace)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
        sh("ip", "address", "add", f"{address_a}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        for command in (("address", "add", f"{address_b}/30", "dev", inside), ("link", "set", inside, "up"),
                        ("link", "set", "lo", "up")):
            sh("ip", "-n", namespace, *command)
        mounts = " ".join(f"{home / name}:{target}" for name, target in PRIVATE_DIRS.items())
        log = home / "daemons.log"
        # Slave propagation: a mount made here later (none is) would reach B, none of B's reaches here.
        daemons = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "slave",
             "sh", "-c", DAEMONS.format(mounts=mounts)],
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"qemu+tls://{address_b}/system?pkipath={home / 'client'}"

        def started() -> bool:
            assert daemons.poll() is None, log.read_text()
            return answers(uri)

        wait_for(started, 60, f"host B's libvirtd to answer on {uri}")
        yield uri
        connection = libvirt.open(uri)
        for domain in connection.listAllDomains():  # whatever a failed test left on B
            if domain.isActive():
                domain.destroy()
            domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        connection.close()
    finally:
        if daemons is not None and daemons.poll() is None:
            os.killpg(daemons.pid, signal.SIGTERM)  # libvirtd and its virtlogd
            try:
                daemons.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(daemons.pid, signal.SIGKILL)
                daemons.wait(5)
        subprocess.run(["ip", "netns", "delete", namespace], check=False)  # takes the veth pair with it
        shutil.rmtree(home)


def domains(uri: str) -> list[str]:
    """`virsh list --all` of a hypervisor: the names of its domains, running or not."""
    connection = libvirt.open(uri)
    try:
        return [domain.name() for domain in connection.listAllDomains()]
    finally:
        connection.close()


def create(actor, run_tasks, prefix: str, power_on: bool) -> VM:
    spec = vms.VMSpec(name=domain_name(prefix), vcpus=1, memory_bytes=128 * MiB, disk_sizes=[16 * MiB],
                      power_on=power_on)
    return VM.objects.select_related("host").get(uuid=run(vms.request_create_vm(actor, spec), run_tasks).entity_uuid)


def test_maintenance_moves_a_running_vm_to_another_libvirtd_by_live_migration_with_its_disk_in_place(
        qemu_cluster, host_b_uri, libvirtd, actor, admin, run_tasks, monkeypatch):
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs them here
    vm = create(actor, run_tasks, "migrate", power_on=True)
    stopped = create(actor, run_tasks, "parked", power_on=False)  # moves by its definition
    host_a = vm.host
    # Added once the VMs are on A, so that placement could not choose it.
    host_b = Host.objects.create(cluster=qemu_cluster, name="qemu-2", address=urlsplit(host_b_uri).hostname,
                                 cpus=host_a.cpus, memory_bytes=8 * GiB, driver_uri=host_b_uri)
    disk = vm.disks.get()
    before = disk.path.stat()
    written = {0: 0x5A, 4 * MiB: 0xA5}
    for offset, byte in written.items():
        write(vm, byte, offset)  # into the running guest's disk, on A

    parent = hosts.request_enter_maintenance(actor, host_a)
    run_tasks()

    parent.refresh_from_db()
    moves = list(Task.objects.filter(parent=parent).order_by("entity_name"))
    assert [(task.kind, task.status, task.error, task.message) for task in moves] == [
        ("vm.migrate", Task.Status.SUCCEEDED, "", f"{moved.name} moved from qemu-1 to qemu-2")
        for moved in sorted((vm, stopped), key=lambda moved: moved.name)]
    assert parent.status == Task.Status.SUCCEEDED, parent.error
    vm.refresh_from_db()
    stopped.refresh_from_db()
    assert (vm.host, vm.power_state) == (host_b, VM.PowerState.ON)
    assert (stopped.host, stopped.power_state) == (host_b, VM.PowerState.OFF)
    shown = client_for(admin).get(f"/api/v1/vms/{vm.uuid}/").json()
    assert (shown["host"]["name"], shown["power_state"]) == ("qemu-2", "on")
    host_a.refresh_from_db()
    assert host_a.state == Host.State.MAINTENANCE and not host_a.vms.exists()

    # The domain runs on B, defined there for good, and A has none left.
    assert vm.name in domains(host_b_uri) and vm.name not in domains(libvirtd)
    there = libvirt.open(host_b_uri).lookupByUUIDString(str(vm.uuid))
    assert there.isActive() and there.isPersistent()
    assert get_driver(host_b.driver_uri).state(vm) == "on"
    hosts.reconcile_power_states()  # what each host's hypervisor reports agrees
    vm.refresh_from_db()
    assert vm.power_state == VM.PowerState.ON
    # Its disk is the same file in the same place, which B's QEMU now runs on: nothing was copied.
    assert vm.disks.get().path == disk.path and live_disk(vm).find("source").get("file") == str(disk.path)
    after = disk.path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    holds(lambda command: monitor_io(vm, command), written)  # what the guest wrote on A, read by QEMU on B
    write(vm, 0x3C, 8 * MiB)
    written[8 * MiB] = 0x3C

    run(power.request_power(actor, vm, "power-off"), run_tasks)  # through B's libvirtd
    holds(lambda command: file_io(disk.path, command), written)
    # The stopped VM's definition is B's now, and starts there.
    assert stopped.name in domains(host_b_uri) and stopped.name not in domains(libvirtd)
    run(power.request_power(actor, stopped, "power-on"), run_tasks)
    assert get_driver(host_b.driver_uri).state(stopped) == "on"
    for moved in (vm, stopped):
        run(vms.request_delete(actor, moved), run_tasks)
    assert not disk.path.exists()
    assert domains(host_b_uri) == [] and not {vm.name, stopped.name} & set(domains(libvirtd))
