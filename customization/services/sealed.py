"""Sealed values: secrets a VM's first-boot media must carry that the database must not hold readable, such as
a Docker host VM's own key. The stored content holds a placeholder (`placeholder(name)`) where the value goes;
the values are kept encrypted (Fernet, with a key derived from Django's secret key, which is not in the database)
only until the media are built, when they are written into the media alone and erased from the row."""

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from console.core.errors import Conflict

PURPOSE = b"facet.customization.sealed-values:"


def placeholder(name: str) -> str:
    return f"@@facet-sealed:{name}@@"


def _fernet() -> Fernet:
    digest = hashlib.sha256(PURPOSE + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(values: dict[str, str]) -> str:
    return _fernet().encrypt(json.dumps(values).encode()).decode() if values else ""


def unseal(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise Conflict({"customization": [
            "the media's sealed values no longer open (was the console's secret key changed since the request?); "
            "create the VM again"]}) from None


def fill(content: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        content = content.replace(placeholder(name), value)
    return content
