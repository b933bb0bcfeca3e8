"""The rules a network's addressing follows, shared by the API and the console form."""

import ipaddress

from console.core.errors import InvalidRequest


def check_addressing(cidr: str, gateway: str | None = None, pool_start: str | None = None,
                     pool_end: str | None = None, dns_servers: str = "") -> str:
    """Raise InvalidRequest naming the field that is wrong; return the subnet in canonical form."""
    try:
        subnet = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise InvalidRequest({"cidr": [f"{cidr!r} is not a subnet such as 10.0.0.0/24"]}) from None
    for field, value in (("gateway", gateway), ("pool_start", pool_start), ("pool_end", pool_end)):
        if value and ipaddress.ip_address(value) not in subnet:
            raise InvalidRequest({field: [f"{value} is outside {subnet}"]})
    if bool(pool_start) != bool(pool_end):
        raise InvalidRequest({"pool_end": ["give both ends of the pool, or neither"]})
    if pool_start and ipaddress.ip_address(pool_start) > ipaddress.ip_address(pool_end):
        raise InvalidRequest({"pool_end": ["the pool ends before it starts"]})
    for dns in filter(None, (d.strip() for d in (dns_servers or "").split(","))):
        try:
            ipaddress.ip_address(dns)
        except ValueError:
            raise InvalidRequest({"dns_servers": [f"{dns!r} is not an IP address"]}) from None
    return str(subnet)
