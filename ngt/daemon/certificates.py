"""A service instance's server certificate, from the cluster's CA, naming the VIP and the instance's address
(agents reach whichever instance holds the VIP, and proxies reach the leader by its address)."""

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ngt.services.authority import CLOCK_SKEW, Signer

SERVICE_ORGANIZATION = "Facet Guest Tools Service"  # what the leader asks of a proxy's certificate
SERVER_CERTIFICATE_DAYS = 30  # made again at every start: short-lived is free


@dataclass(frozen=True)
class ServerIdentity:
    certificate_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def server_identity(signer: Signer, host_name: str, addresses: list[str]) -> ServerIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    names = [x509.IPAddress(ipaddress.ip_address(address)) for address in dict.fromkeys(addresses)]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, SERVICE_ORGANIZATION),
                                 x509.NameAttribute(NameOID.COMMON_NAME, host_name)]))
        .issuer_name(signer.certificate.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + timedelta(days=SERVER_CERTIFICATE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(signer.key, hashes.SHA256())
    )
    return ServerIdentity(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
        signer.certificate_pem.encode())
