"""Settings from the environment (the systemd unit reads them from /etc/facet/volume-plugin.env)."""

import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    url: str  # FACET_URL: the console, e.g. https://facet.example:8000
    token: str  # FACET_TOKEN: this Docker host's key (not a user's token, no password)
    docker_host: str  # FACET_DOCKER_HOST: this host's name in the console, checked against the key's
    default_container: str = ""  # FACET_DEFAULT_CONTAINER: storage container of volumes created without one
    socket: Path = Path("/run/docker/plugins/facet.sock")  # FACET_PLUGIN_SOCKET
    volumes_root: Path = Path("/var/lib/facet/volumes")  # FACET_VOLUMES_ROOT: volumes mount at ROOT/NAME
    state_file: Path = Path("/var/lib/facet/volume-plugin.json")  # FACET_STATE_FILE
    call_seconds: float = 20.0  # FACET_CALL_SECONDS: the deadline of each Docker request's console calls
    report_seconds: float = 10.0  # FACET_REPORT_SECONDS: usage reports, and the longest wait between detach retries
    # FACET_HOLD_SECONDS: how long a volume created here stays attached for its first Mount; 0 never attaches at
    # create (for swarms that create volumes on one node and mount them on another)
    hold_seconds: float = 60.0

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> "Config":
        env = dict(os.environ if env is None else env)
        missing = [name for name in ("FACET_URL", "FACET_TOKEN", "FACET_DOCKER_HOST") if not env.get(name)]
        if missing:
            raise ConfigError(f"set {', '.join(missing)} (see /etc/facet/volume-plugin.env)")
        if not env["FACET_URL"].startswith(("http://", "https://")):
            raise ConfigError(f"FACET_URL must start with http:// or https://, not {env['FACET_URL']!r}")
        defaults = cls.__dataclass_fields__
        return cls(
            url=env["FACET_URL"].rstrip("/"), token=env["FACET_TOKEN"], docker_host=env["FACET_DOCKER_HOST"],
            default_container=env.get("FACET_DEFAULT_CONTAINER", ""),
            socket=Path(env.get("FACET_PLUGIN_SOCKET") or defaults["socket"].default),
            volumes_root=Path(env.get("FACET_VOLUMES_ROOT") or defaults["volumes_root"].default),
            state_file=Path(env.get("FACET_STATE_FILE") or defaults["state_file"].default),
            call_seconds=_seconds(env, "FACET_CALL_SECONDS", defaults["call_seconds"].default),
            report_seconds=_seconds(env, "FACET_REPORT_SECONDS", defaults["report_seconds"].default),
            hold_seconds=_seconds(env, "FACET_HOLD_SECONDS", defaults["hold_seconds"].default, zero=True),
        )


def _seconds(env: dict[str, str], name: str, default: float, zero: bool = False) -> float:
    text = env.get(name) or str(default)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    least_ok = seconds >= 0 if zero else seconds > 0
    if not least_ok or seconds >= 86400:
        raise ConfigError(f"{name} must be a number of seconds {'of 0 or more' if zero else 'above 0'}, not {text!r}")
    return seconds
