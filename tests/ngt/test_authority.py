"""The CA: its key-encryption key file, clear errors when that file is lost or damaged, backup and restore."""

import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from console.core.models import AuditEvent, Task
from ngt.models import CertificateAuthority, VMCertificate
from ngt.services import authority, guest_tools
from tests.ngt.conftest import iso_file

PASSPHRASE = "correct horse battery staple"


def mount(actor, vm, run_tasks) -> Path:
    guest_tools.request_mount(actor, vm)
    run_tasks()
    return Path(vm.cdroms.get(purpose="guest-tools").iso_path)


def test_the_ca_is_p256_valid_ten_years_and_its_key_is_only_stored_encrypted(cluster):
    ca = authority.authority_for(cluster)
    signer = authority.open_authority(ca)
    assert signer.key.curve.name == "secp256r1"
    years = (signer.certificate.not_valid_after_utc - signer.certificate.not_valid_before_utc).days / 365.25
    assert 9.99 < years < 10.01
    assert b"PRIVATE" not in bytes(ca.encrypted_key)
    assert authority.authority_for(cluster).pk == ca.pk  # made once


@pytest.mark.parametrize("damage", ["missing", "corrupt", "replaced"])
def test_a_lost_or_damaged_key_file_is_a_clear_error_and_leaves_nothing(vm, actor, run_tasks, ca_key_file,
                                                                          damage):
    authority.authority_for(vm.cluster)
    if damage == "missing":
        ca_key_file.unlink()
    elif damage == "corrupt":
        ca_key_file.write_text("not a key")
    else:
        ca_key_file.unlink()
        authority.key_encryption_key(create=True)
    with pytest.raises(authority.CaUnavailable, match="guest_tools_ca import") as caught:
        guest_tools.request_mount(actor, vm)
    assert caught.value.status_code == 503
    assert not Task.objects.filter(kind="ngt.mount").exists() and not VMCertificate.objects.exists()
    assert not vm.cdroms.filter(purpose="guest-tools").exists()


def test_a_key_file_damaged_after_the_request_fails_the_task_and_leaves_nothing(vm, actor, run_tasks, ca_key_file):
    task = guest_tools.request_mount(actor, vm)
    ca_key_file.write_text("not a key")
    run_tasks()
    task.refresh_from_db()
    assert task.status == "failed" and "is corrupt" in task.error
    assert not VMCertificate.objects.exists()
    assert not Path(task.params["iso_path"]).exists()
    assert vm.cdroms.get(slot=0).iso_path == ""


def test_the_api_answers_503_naming_the_file(api, vm, ca_key_file):
    authority.authority_for(vm.cluster)
    ca_key_file.unlink()
    answer = api.post(f"/api/v1/vms/{vm.uuid}/guest-tools/mount/")
    assert answer.status_code == 503 and str(ca_key_file) in answer.json()["detail"][0]


def test_export_and_import_restore_the_ca_and_old_certificates_still_verify(vm, actor, run_tasks, ca_key_file,
                                                                              tmp_path):
    iso = mount(actor, vm, run_tasks)
    client_pem = tmp_path / "client.pem"
    client_pem.write_bytes(iso_file(iso, "config/client.pem"))
    passphrase, backup = tmp_path / "passphrase", tmp_path / "ca.p12"
    passphrase.write_text(PASSPHRASE + "\n")
    call_command("guest_tools_ca", "export", str(backup), "--passphrase-file", str(passphrase))
    before = CertificateAuthority.objects.get().certificate_pem
    # The disaster: the key-encryption key is gone and the CA with it.
    ca_key_file.unlink()
    CertificateAuthority.objects.all().delete()

    call_command("guest_tools_ca", "import", str(backup), "--passphrase-file", str(passphrase))
    restored = CertificateAuthority.objects.get()
    assert restored.certificate_pem == before and ca_key_file.exists()
    assert set(AuditEvent.objects.filter(action__startswith="ngt.ca.").values_list("action", flat=True)) == {
        "ngt.ca.export", "ngt.ca.import"}
    (tmp_path / "ca.pem").write_text(restored.certificate_pem)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(client_pem)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    # and it signs again
    mount(actor, vm, run_tasks)
    assert VMCertificate.objects.filter(revoked=False).count() == 1


def test_the_backup_is_passphrase_protected(cluster, tmp_path):
    passphrase, backup = tmp_path / "passphrase", tmp_path / "ca.p12"
    passphrase.write_text(PASSPHRASE)
    call_command("guest_tools_ca", "export", str(backup), "--passphrase-file", str(passphrase))
    assert backup.stat().st_mode & 0o077 == 0
    passphrase.write_text("wrong passphrase!")
    with pytest.raises(CommandError, match="wrong passphrase"):
        call_command("guest_tools_ca", "import", str(backup), "--passphrase-file", str(passphrase))
    with pytest.raises(CommandError, match="exists"):
        call_command("guest_tools_ca", "export", str(backup), "--passphrase-file", str(tmp_path / "passphrase"))


def test_the_key_file_is_made_on_first_start_but_never_over_a_ca(cluster, ca_key_file):
    authority.ensure_key_file()
    assert ca_key_file.stat().st_mode & 0o777 == 0o600
    first = ca_key_file.read_bytes()
    authority.ensure_key_file()
    assert ca_key_file.read_bytes() == first
    authority.authority_for(cluster)
    ca_key_file.unlink()
    authority.ensure_key_file()  # a CA exists: a new key could not open it, so none is made
    assert not ca_key_file.exists()
