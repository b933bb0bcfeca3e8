"""Every way `facet` can fail, each with the exit code that scripts rely on (see `EXIT_CODES`)."""

OK = 0
REFUSED = 1
USAGE = 2
UNREACHABLE = 3
TASK_FAILED = 4
SERVER_ERROR = 5
BUG = 70
INTERRUPTED = 130

EXIT_CODES = (
    (OK, "success"),
    (REFUSED, "the API refused the request (HTTP 4xx other than 401, or no such name); "
              "its errors are printed as `field: message` lines on stderr"),
    (USAGE, "usage error: unknown noun, verb, option or key, a bad value, a missing key"),
    (UNREACHABLE, "cannot reach the server, or not logged in (no credentials, or HTTP 401: the token "
                  "is unknown or revoked)"),
    (TASK_FAILED, "the task failed or was cancelled (with --wait)"),
    (SERVER_ERROR, "the server failed (HTTP 5xx)"),
    (BUG, "a bug in facet itself (a traceback is printed): please report it"),
    (INTERRUPTED, "interrupted (Ctrl-C); a task being waited for goes on"),
)


class CliError(Exception):
    """A failure to report on stderr, ending `facet` with `exit_code`."""

    exit_code = REFUSED

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.lines = lines or []  # details, one per line, printed after the message


class UsageError(CliError):
    exit_code = USAGE


class Unreachable(CliError):
    """No connection, no JSON where the API should be, or no credentials at all."""

    exit_code = UNREACHABLE


class NotLoggedIn(Unreachable):
    pass


class Refused(CliError):
    """The API said no (4xx), or a name given for a uuid matched nothing."""

    exit_code = REFUSED


class ServerError(CliError):
    exit_code = SERVER_ERROR


class TaskFailed(CliError):
    exit_code = TASK_FAILED


class Interrupted(CliError):
    """Ctrl-C; a task being waited for goes on."""

    exit_code = INTERRUPTED
