"""The console's REST API as the plugin uses it: this Docker host's key, JSON, and a deadline on every
Docker request, so that a console that is down or slow gives Docker a clear error in time, never a hang."""

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from . import VERSION

# A task of ours takes a few milliseconds once a worker has it: look early, then less and less often.
FIRST_POLL_SECONDS, MAX_POLL_SECONDS = 0.005, 0.2
# After a call timed out, calls fail at once for this long: Docker often sends several requests for one
# command (Get, then Create), and each waiting out its own deadline would make the command hang for minutes.
QUIET_SECONDS = 15.0
log = logging.getLogger("facet-volume-plugin")
ENDED = ("succeeded", "failed", "cancelled")


class ConsoleError(Exception):
    """The console refused, failed or did not answer in time; the message is what Docker shows."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self, what: str) -> float:
        remaining = self.ends - time.monotonic()
        if remaining <= 0:
            raise ConsoleError(f"the Facet console did not finish {what} within {self.seconds:g} s")
        return remaining


class FacetApi:
    def __init__(self, url: str, token: str) -> None:
        self.base = url.rstrip("/") + "/api/v1/docker-host/"
        self.token = token
        self._silent_until = 0.0
        self._silence = ""

    def call(self, method: str, path: str, deadline: Deadline, body: Any = None) -> Any:
        """One call; an HTTP error becomes a ConsoleError with the console's own words."""
        what = f"{method} {path or '/'}"
        if time.monotonic() < self._silent_until:
            raise ConsoleError(f"{self._silence} (not asked again for {QUIET_SECONDS:g} s)")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={  # noqa: S310 (FACET_URL is http(s), checked in config)
            "Authorization": f"Token {self.token}", "Accept": "application/json",
            "Content-Type": "application/json", "User-Agent": f"facet-volume-plugin/{VERSION}"})
        began = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=deadline.left(what)) as response:  # noqa: S310
                raw = response.read()
            log.debug("%s: %.0f ms", what, (time.monotonic() - began) * 1000)
        except urllib.error.HTTPError as exc:
            raise ConsoleError(f"the Facet console refused {what}: {_reason(exc.read()) or exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, or the socket timed out
            reason = getattr(exc, "reason", exc)
            message = f"cannot reach the Facet console at {self.base} for {what}: {reason}"
            if isinstance(reason, TimeoutError):
                self._silent_until, self._silence = time.monotonic() + QUIET_SECONDS, message
            raise ConsoleError(message) from None
        return json.loads(raw) if raw else None

    def wait(self, task: dict, deadline: Deadline) -> dict:
        """Follow a task the console accepted until it ends; a failed task is a ConsoleError."""
        pause = FIRST_POLL_SECONDS
        while task["status"] not in ENDED:
            time.sleep(min(pause, deadline.left(f"task {task['kind']}")))
            pause = min(pause * 2, MAX_POLL_SECONDS)
            task = self.call("GET", f"tasks/{task['uuid']}/", deadline)
        if task["status"] != "succeeded":
            first = (task.get("error") or task["status"]).split("\n\n")[0]
            raise ConsoleError(f"{task['kind']} failed: {first}")
        return task

    def change(self, method: str, path: str, deadline: Deadline, body: Any = None) -> Any:
        """A call that may answer a task (202): wait for it. Other answers come back as they are."""
        answer = self.call(method, path, deadline, body)
        if isinstance(answer, dict) and "kind" in answer and "status" in answer and "percent" in answer:
            return self.wait(answer, deadline)
        return answer


def _reason(body: bytes) -> str:
    """The console's errors are `{"field": ["message", ...]}`; flatten them into one line."""
    try:
        errors = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:300]
    if not isinstance(errors, dict):
        return str(errors)[:300]
    parts = []
    for field, messages in errors.items():
        text = " ".join(messages) if isinstance(messages, list) else str(messages)
        parts.append(text if field in ("detail", "non_field_errors") else f"{field}: {text}")
    return "; ".join(parts)
