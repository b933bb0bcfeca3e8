"""Credentials (environment or the file `facet login` writes) and a small JSON client of `/api/v1/`."""

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NotLoggedIn, Refused, ServerError, Unreachable

API_PREFIX = "/api/v1"
TIMEOUT_SECONDS = 30.0
USER_AGENT = "facet-cli/0.1"
MAX_PAGE_SIZE = 500  # the API's largest page


def config_path() -> Path:
    """`$XDG_CONFIG_HOME/facet/config.json`, else `~/.config/facet/config.json`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "facet" / "config.json"


def read_config() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise NotLoggedIn(f"cannot read {path}: {exc}; run `facet login` again") from None
    return data if isinstance(data, dict) else {}


def write_config(data: dict) -> Path:
    """Write the file readable by its owner only (0600, in a 0700 directory), atomically."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def normalize_url(url: str) -> str:
    """The console's base address, whether given with or without `/api/v1` and trailing slashes."""
    url = url.strip().rstrip("/")
    url = url.removesuffix(API_PREFIX).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// address")
    return url


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str


def credentials() -> Credentials:
    """FACET_URL and FACET_TOKEN, each winning over what `facet login` saved."""
    saved = read_config()
    url = os.environ.get("FACET_URL") or saved.get("url")
    token = os.environ.get("FACET_TOKEN") or saved.get("token")
    if not url or not token:
        raise NotLoggedIn("not logged in: run `facet login url=URL username=NAME`, "
                          "or set FACET_URL and FACET_TOKEN")
    try:
        return Credentials(normalize_url(url), token)
    except ValueError as exc:
        raise NotLoggedIn(f"FACET_URL or {config_path()}: {exc}") from None


class Client:
    """JSON over HTTP to `URL/api/v1`, with `Authorization: Token ...` when a token is given."""

    def __init__(self, url: str, token: str | None = None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = normalize_url(url)
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None) -> Any:
        """Answer the decoded JSON (None for an empty body); raise a CliError for anything but 2xx."""
        address = self.url + API_PREFIX + path
        if query:
            address += "?" + urllib.parse.urlencode(query, doseq=True)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(address, data=data, headers=headers, method=method)  # noqa: S310 (http/https only, checked in normalize_url)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise http_error(exc.code, exc.read(), f"{method} {API_PREFIX}{path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach {self.url}: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise Unreachable(f"{self.url} did not answer JSON to {method} {API_PREFIX}{path}; "
                              "is this the address of a Facet console?") from None

    def pages(self, path: str, query: dict | None = None) -> Iterator[dict]:
        """Every page of a list, following `next`. Only its query is taken: the token goes to our own URL,
        whatever host a proxy made the server write into the link."""
        query = dict(query or {})
        while True:
            page = self.request("GET", path, query=query)
            yield page
            if not page.get("next"):
                return
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(page["next"]).query)


def decode_error(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        text = body.decode(errors="replace").strip()
        return {"detail": text.splitlines()[0][:200]} if text and not text.startswith("<") else None


def http_error(status: int, body: bytes, what: str) -> Exception:
    """The CliError for a non-2xx answer: 401 means not logged in, other 4xx refused, 5xx a server error."""
    payload = decode_error(body)
    lines = error_lines(payload) if payload is not None else []
    if status == 401:
        return Unauthorized("; ".join(line.removeprefix("detail: ") for line in lines) or "authentication required")
    if status >= 500:
        return ServerError(f"the server failed (HTTP {status}) on {what}", lines)
    return ApiRefused(status, payload, what)


class Unauthorized(NotLoggedIn):
    """HTTP 401: no token, or one the server does not know (any more)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the server did not accept the token ({detail}): run `facet login`, "
                         "or set FACET_TOKEN to a valid token")
        self.detail = detail


class ApiRefused(Refused):
    """A 4xx answer; `payload` is the API's error JSON, kept so that field names can be shown as keys."""

    def __init__(self, status: int, payload: Any, what: str) -> None:
        super().__init__(f"the API refused {what} (HTTP {status})", error_lines(payload))
        self.status = status
        self.payload = payload

    def rename_fields(self, names: dict[str, str]) -> None:
        """Show the API's top-level field names as the CLI's keys (`memory_bytes` -> `memory`)."""
        if isinstance(self.payload, dict):
            flat = (str, list)  # nested errors (`nics[0].network`) keep the API's names, which they spell out
            renamed = {names.get(field, field) if isinstance(value, flat) and all(isinstance(m, str) for m in value)
                       else field: value for field, value in self.payload.items()}
            self.lines = error_lines(renamed)


def error_lines(payload: Any, prefix: str = "") -> list[str]:
    """DRF and service errors as `field: message` lines; nested fields as `nics[1].network`."""
    if isinstance(payload, dict):
        return [line for field, value in payload.items() for line in error_lines(value, child(prefix, field))]
    if isinstance(payload, list):
        lines = []
        for index, item in enumerate(payload):
            lines += error_lines(item, f"{prefix}[{index}]") if isinstance(item, dict | list) else \
                [f"{prefix or 'error'}: {item}"]
        return lines
    return [f"{prefix or 'error'}: {payload}"]


def child(prefix: str, field: object) -> str:
    """`nics[0]` for the index keys DRF gives the items of a list, `filter.power_state` for a nested field."""
    if str(field).isdigit():
        return f"{prefix}[{field}]"
    return f"{prefix}.{field}" if prefix else str(field)
