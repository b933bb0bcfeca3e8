"""The Guest Tools certificate authority of a cluster: an ECDSA P-256 root valid ten years, created on first
use, whose private key is kept encrypted with the CA key-encryption key, and the client certificates it
issues to VMs.

The key-encryption key is a file of its own (FACET_CA_KEY_FILE, default DATA_DIR/ca_key, mode 0600), not
Django's secret key, so that rotating the secret key never makes the CA unreadable; it is made together
with the first CA and only then."""

import base64
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db import transaction

from console.core.errors import ServiceError
from console.models import VM, Cluster

from ..models import CertificateAuthority

log = logging.getLogger(__name__)
CA_YEARS = 10
CA_VALIDITY = timedelta(days=365 * CA_YEARS + CA_YEARS // 4)  # with the leap days
CLIENT_CERTIFICATE_DAYS = 730
KEK_BYTES = 32
NONCE_BYTES = 12
CLOCK_SKEW = timedelta(minutes=5)  # a guest whose clock is a little behind still accepts a new certificate


class CaUnavailable(ServiceError):
    """The CA's key cannot be read: the key-encryption key file is missing, corrupt or not the right one."""

    status_code = 503


def key_file_path() -> Path:
    return Path(os.environ.get("FACET_CA_KEY_FILE") or Path(settings.DATA_DIR) / "ca_key")


def _read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise CaUnavailable(f"cannot read the Guest Tools CA key-encryption key file {path}: {exc.strerror}. "
                            "Restore that file, or import the CA backup (manage.py guest_tools_ca import FILE)"
                            ) from None
    try:
        key = base64.urlsafe_b64decode(text)
    except ValueError:
        key = b""
    if len(key) != KEK_BYTES:
        raise CaUnavailable(f"the Guest Tools CA key-encryption key file {path} is corrupt (it should hold "
                            f"{KEK_BYTES} bytes in base64). Restore it, or import the CA backup "
                            "(manage.py guest_tools_ca import FILE)")
    return key


def _create_key_file(path: Path) -> bytes:
    key = secrets.token_bytes(KEK_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.urlsafe_b64encode(key).decode() + "\n")
    log.info("created the Guest Tools CA key-encryption key file %s", path)
    return key


def ensure_key_file() -> None:
    """Make the key-encryption key file on first start (after `migrate`), before any CA needs it; an existing
    file is left alone, and so is a missing one while a CA exists (a new key would not open it)."""
    path = key_file_path()
    if not path.exists() and not CertificateAuthority.objects.exists():
        with contextlib.suppress(FileExistsError):
            _create_key_file(path)


def key_encryption_key(create: bool = False) -> bytes:
    """The key-encryption key; made when `create` and no file exists yet (never over an existing one, whose
    loss would make every CA encrypted with it unreadable)."""
    path = key_file_path()
    if create and not path.exists():
        try:
            return _create_key_file(path)
        except FileExistsError:
            pass  # another process made it meanwhile: read theirs
    return _read_key_file(path)


def _seal(private_key: ec.EllipticCurvePrivateKey, cluster: Cluster, kek: bytes) -> bytes:
    der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    nonce = secrets.token_bytes(NONCE_BYTES)
    # The cluster's uuid as associated data: a key blob copied onto another cluster's row does not open.
    return nonce + AESGCM(kek).encrypt(nonce, der, cluster.uuid.bytes)


def fingerprint(certificate: x509.Certificate) -> str:
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _columns(cluster: Cluster, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, kek: bytes) -> dict:
    return {
        "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "encrypted_key": _seal(key, cluster, kek),
        "fingerprint_sha256": fingerprint(certificate),
        "not_after": certificate.not_valid_after_utc,
    }


def _new_root(cluster: Cluster) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Facet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Facet Guest Tools CA {cluster.name}")])
    now = datetime.now(UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def authority_for(cluster: Cluster) -> CertificateAuthority:
    """The cluster's CA, made on first use."""
    existing = CertificateAuthority.objects.select_related("cluster").filter(cluster=cluster).first()
    if existing is not None:
        return existing
    first = not CertificateAuthority.objects.exists()
    kek = key_encryption_key(create=first)
    certificate, key = _new_root(cluster)
    with transaction.atomic():
        authority, created = CertificateAuthority.objects.get_or_create(
            cluster=cluster, defaults=_columns(cluster, certificate, key, kek))
    if created:
        log.info("created the Guest Tools CA of cluster %s", cluster.name)
    return authority


@dataclass(frozen=True)
class Signer:
    """A CA whose key is open, for the time of one task."""

    authority: CertificateAuthority
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> str:
        return self.authority.certificate_pem


def open_authority(authority: CertificateAuthority) -> Signer:
    """Decrypt the CA key; a wrong, missing or corrupt key-encryption key file is a CaUnavailable."""
    kek = key_encryption_key()
    blob = bytes(authority.encrypted_key)
    try:
        der = AESGCM(kek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], authority.cluster.uuid.bytes)
    except InvalidTag:
        raise CaUnavailable(f"the Guest Tools CA key of cluster {authority.cluster.name} does not open with the "
                            f"key-encryption key in {key_file_path()}: that file was replaced or damaged. Restore "
                            "it, or import the CA backup (manage.py guest_tools_ca import FILE)") from None
    key = serialization.load_der_private_key(der, password=None)
    certificate = x509.load_pem_x509_certificate(authority.certificate_pem.encode())
    return Signer(authority, certificate, key)


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    pem: str
    serial: str
    not_before: datetime
    not_after: datetime


def issue(signer: Signer, vm: VM, public_key: ec.EllipticCurvePublicKey) -> IssuedCertificate:
    """A client certificate whose subject names the VM uuid (the agent's identity on the network)."""
    now = datetime.now(UTC)
    not_after = min(now + timedelta(days=CLIENT_CERTIFICATE_DAYS), signer.certificate.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Facet Guest Tools"),
                         x509.NameAttribute(NameOID.COMMON_NAME, str(vm.uuid))])
    ca_key_id = signer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(signer.certificate.subject)
        .public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:uuid:{vm.uuid}")]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
        .sign(signer.key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, certificate.public_bytes(serialization.Encoding.PEM).decode(),
                             serial_text(certificate.serial_number), certificate.not_valid_before_utc,
                             certificate.not_valid_after_utc)


def serial_text(serial: int) -> str:
    return f"{serial:040x}"


# Backup and restore, as a passphrase-protected PKCS#12 file.

def export_backup(cluster: Cluster, passphrase: bytes) -> bytes:
    signer = open_authority(authority_for(cluster))
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(200_000)
                  .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
                  .build(passphrase))
    return pkcs12.serialize_key_and_certificates(f"facet-guest-tools-ca-{cluster.name}".encode(), signer.key,
                                                 signer.certificate, None, encryption)


def import_backup(cluster: Cluster, data: bytes, passphrase: bytes) -> CertificateAuthority:
    """Restore a backup as the cluster's CA, encrypted with the current key-encryption key (made when the
    file is gone, which is the case this restore exists for). Certificates it issued verify again."""
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(data, passphrase)
    except ValueError as exc:
        raise ServiceError(f"cannot read the backup: wrong passphrase or not a PKCS#12 file ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or certificate is None:
        raise ServiceError("the backup holds no ECDSA CA key and certificate")
    if certificate.public_key().public_numbers() != key.public_key().public_numbers():
        raise ServiceError("the backup's key does not belong to its certificate")
    others = CertificateAuthority.objects.exclude(cluster=cluster).exists()
    kek = key_encryption_key(create=not others)
    authority, _ = CertificateAuthority.objects.update_or_create(
        cluster=cluster, defaults=_columns(cluster, certificate, key, kek))
    return authority
