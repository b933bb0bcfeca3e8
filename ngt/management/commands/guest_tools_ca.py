"""`manage.py guest_tools_ca export FILE` / `import FILE`: a passphrase-protected PKCS#12 backup of the Guest
Tools CA, because losing it cuts every agent off. The passphrase is asked on the terminal, or read from the
file named by --passphrase-file (for scripts)."""

import getpass
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from console.core import audit
from console.core.actors import Actor
from console.core.errors import ServiceError
from console.models import Cluster
from ngt.services import authority

MIN_PASSPHRASE = 12


class Command(BaseCommand):
    help = "Export or import the Guest Tools certificate authority as a passphrase-protected PKCS#12 file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("direction", choices=["export", "import"])
        parser.add_argument("file", type=Path)
        parser.add_argument("--cluster", help="the cluster's name (default: the first cluster)")
        parser.add_argument("--passphrase-file", type=Path, help="read the passphrase from this file")

    def handle(self, *args, direction: str, file: Path, cluster: str | None, passphrase_file: Path | None,
               **options) -> None:
        target = self._cluster(cluster)
        try:
            if direction == "export":
                self._export(target, file, self._passphrase(passphrase_file, confirm=True))
            else:
                self._import(target, file, self._passphrase(passphrase_file, confirm=False))
        except ServiceError as exc:
            raise CommandError(str(exc).removeprefix("detail: ")) from None

    @staticmethod
    def _cluster(name: str | None) -> Cluster:
        clusters = Cluster.objects.order_by("id")
        found = clusters.filter(name=name).first() if name else clusters.first()
        if found is None:
            raise CommandError(f"no cluster named {name!r}" if name else "no cluster exists yet")
        return found

    @staticmethod
    def _passphrase(source: Path | None, confirm: bool) -> bytes:
        if source is not None:
            passphrase = source.read_text().rstrip("\n")
        else:
            passphrase = getpass.getpass("Backup passphrase: ")
            if confirm and getpass.getpass("Again: ") != passphrase:
                raise CommandError("the passphrases differ")
        if confirm and len(passphrase) < MIN_PASSPHRASE:
            raise CommandError(f"use a passphrase of at least {MIN_PASSPHRASE} characters")
        return passphrase.encode()

    def _export(self, cluster: Cluster, file: Path, passphrase: bytes) -> None:
        data = authority.export_backup(cluster, passphrase)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{file} exists; choose another name") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        ca = authority.authority_for(cluster)
        audit.record(Actor.system(), "ngt.ca.export", cluster, file=str(file), fingerprint=ca.fingerprint_sha256)
        self.stdout.write(f"Guest Tools CA of {cluster.name} ({ca.fingerprint_sha256}) exported to {file}; keep it "
                          "and its passphrase apart.")

    def _import(self, cluster: Cluster, file: Path, passphrase: bytes) -> None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        ca = authority.import_backup(cluster, data, passphrase)
        audit.record(Actor.system(), "ngt.ca.import", cluster, file=str(file), fingerprint=ca.fingerprint_sha256)
        self.stdout.write(f"Guest Tools CA of {cluster.name} restored ({ca.fingerprint_sha256}), valid until "
                          f"{ca.not_after:%Y-%m-%d}; its key is encrypted with {authority.key_file_path()}.")
