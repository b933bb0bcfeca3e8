"""The console's REST API as the plugin uses it: this Docker host's key, JSON over kept-alive connections, and
a deadline on every Docker request, so that a console that is down or slow gives Docker a clear error in time,
never a hang."""

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.parse
from typing import Any

from . import VERSION

# A change the console cannot finish within the request (one that needs a hypervisor) answers a running task:
# look early, then less and less often.
FIRST_POLL_SECONDS, MAX_POLL_SECONDS = 0.005, 0.2
# After a call timed out, calls fail at once for this long: Docker often sends several requests for one
# command (Get, then Create), and each waiting out its own deadline would make the command hang for minutes.
QUIET_SECONDS = 15.0
log = logging.getLogger("facet-volume-plugin")
ENDED = ("succeeded", "failed", "cancelled")


class ConsoleError(Exception):
    """The console refused, failed or did not answer in time; the message is what Docker shows."""


class ConsoleUnreachable(ConsoleError):
    """The console did not answer (down, silent, or failing with a 5xx): worth asking again later, unlike a
    refusal."""


class ConsoleBusy(ConsoleUnreachable):
    """The console refused for now (423): another change of the volume is under way; worth asking again later."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self, what: str) -> float:
        remaining = self.ends - time.monotonic()
        if remaining <= 0:
            raise ConsoleUnreachable(f"the Facet console did not finish {what} within {self.seconds:g} s")
        return remaining


class FacetApi:
    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        self.base = f"{url.rstrip('/')}/api/v1/docker-host/"
        self._path = f"{parts.path}/api/v1/docker-host/"
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._context = ssl.create_default_context() if self._https else None
        self._headers = {"Authorization": f"Token {token}", "Accept": "application/json",
                         "Content-Type": "application/json", "User-Agent": f"facet-volume-plugin/{VERSION}"}
        # Idle kept-alive connections: a call takes one (or opens one) and gives it back once answered, so the
        # plugin holds as many as it ever had calls at once, whichever threads Docker's requests come on.
        self._idle: list[http.client.HTTPConnection] = []
        self._idle_lock = threading.Lock()
        self._silent_until = 0.0
        self._silence = ""

    def close(self) -> None:
        """Close the idle connections."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def call(self, method: str, path: str, deadline: Deadline, body: Any = None) -> Any:
        """One call; an HTTP error becomes a ConsoleError with the console's own words."""
        what = f"{method} {path.split('?')[0] or '/'}"
        if time.monotonic() < self._silent_until:
            raise ConsoleUnreachable(f"{self._silence} (not asked again for {QUIET_SECONDS:g} s)")
        data = json.dumps(body).encode() if body is not None else None
        began = time.monotonic()
        try:
            status, raw = self._exchange(method, path, data, deadline, what)
        except (OSError, http.client.HTTPException) as exc:  # refused, unreachable, or the socket timed out
            timed_out = isinstance(exc, TimeoutError)
            message = f"cannot reach the Facet console at {self.base} for {what}: {'timed out' if timed_out else exc}"
            if timed_out:
                self._silent_until, self._silence = time.monotonic() + QUIET_SECONDS, message
            raise ConsoleUnreachable(message) from None
        log.debug("%s: %.1f ms", what, (time.monotonic() - began) * 1000)
        if status >= 500:
            raise ConsoleUnreachable(f"the Facet console failed {what}: {_reason(raw) or status}")
        if status == 423:
            raise ConsoleBusy(f"the Facet console refused {what} for now: {_reason(raw)}")
        if status >= 400:
            raise ConsoleError(f"the Facet console refused {what}: {_reason(raw) or status}")
        return json.loads(raw) if raw else None

    def _exchange(self, method: str, path: str, data: bytes | None, deadline: Deadline, what: str
                  ) -> tuple[int, bytes]:
        timeout = deadline.left(what)
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._send(connection, method, path, data, timeout)
            except (ConnectionResetError, BrokenPipeError):
                # The console closes a kept-alive connection it found idle; a request on it never reached the
                # console, so it goes once more on a new connection.
                timeout = deadline.left(what)
        connection = (http.client.HTTPSConnection(self._netloc, context=self._context) if self._https
                      else http.client.HTTPConnection(self._netloc))
        return self._send(connection, method, path, data, timeout)

    def _send(self, connection: http.client.HTTPConnection, method: str, path: str, data: bytes | None,
              timeout: float) -> tuple[int, bytes]:
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request(method, self._path + path, data, self._headers)
            response = connection.getresponse()
            answer = response.status, response.read()
        except BaseException:
            connection.close()
            raise
        with self._idle_lock:
            self._idle.append(connection)
        return answer

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
        """A call that answers a task: the console runs it to its end within the call where it can (`wait=1`),
        else it is followed here. Other answers come back as they are."""
        answer = self.call(method, path + "?wait=1", deadline, body)
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
