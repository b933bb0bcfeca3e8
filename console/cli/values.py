"""Values of `key=value` arguments: each parser takes the text after `=` and returns what the API wants,
or raises ValueError with a message that says how to write it. Sizes are binary (K = 1024 bytes)."""

import ipaddress
import re
import uuid
from collections.abc import Callable
from fractions import Fraction
from typing import Any

Parser = Callable[[str], Any]

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
# ASCII only: Unicode-aware, `\d` takes other scripts' digits and a case-insensitive K takes the Kelvin sign.
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?", re.IGNORECASE | re.ASCII)
_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def text(value: str) -> str:
    if not value.strip():
        raise ValueError("give a value after '='")
    return value


def size(value: str) -> int:
    """`10G`, `512M`, `1T`, `1.5G`, `10GiB`; a bare number is bytes."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size; write it like 512M, 10G or 1T (K = 1024 bytes)")
    number = Fraction(match.group(1)) * UNITS[match.group(2).upper()]  # exact, however many digits
    if number.denominator != 1 or number <= 0:
        raise ValueError(f"{value!r} is not a positive whole number of bytes")
    return int(number)


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean; write true or false")


def uuid_text(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID such as 3f2b9c1e-8d4a-4f1e-9c1a-2b3c4d5e6f70") from None


def uuid_or_name(value: str) -> str:
    """A uuid (normalized), or a name that the CLI looks up before the call (`Key.names`)."""
    value = value.strip()
    if not value:
        raise ValueError("give a uuid or a name")
    return uuid_text(value) if is_uuid(value) else value


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            bounds = f"from {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise ValueError(f"{number} is out of range; give a number {bounds}")
        return number

    return parse


def ip_or_auto(value: str) -> str:
    """`auto` (the next free address of the network's pool) or an IP address."""
    value = value.strip()
    if value.lower() == "auto":
        return "auto"
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is neither 'auto' nor an IP address") from None


def listed(parse: Parser) -> Parser:
    """A comma-separated list of values, each read by `parse`."""

    def parse_list(value: str) -> list:
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise ValueError(f"{value!r} has an empty item; separate values with single commas")
        return [parse(item) for item in items]

    return parse_list


def format_size(n: int | None) -> str:
    """Bytes as the CLI writes sizes: 4294967296 -> `4G`, 1610612736 -> `1.5G`."""
    if n is None:
        return ""
    for unit in "PTGMK":
        if n >= UNITS[unit]:
            return f"{n / UNITS[unit]:.1f}".removesuffix(".0") + unit
    return str(n)
