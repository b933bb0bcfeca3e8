"""Facet settings: everything comes from FACET_* environment variables, with an embedded default
(SQLite in WAL mode, a local redis-server on a unix socket, the `sim` driver) when none is set."""

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console.core.drivers.libvirt_network import NetworkMapError, parse_network_map

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("FACET_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_from_file(path: Path) -> str:
    """Read a secret kept in the data directory, creating it once (mode 0600) when absent."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value


SECRET_KEY = os.environ.get("FACET_SECRET_KEY") or _secret_from_file(DATA_DIR / "secret_key")
DEBUG = os.environ.get("FACET_DEBUG", "") == "1"
PUBLIC_URL = os.environ.get("FACET_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = [PUBLIC_URL]
CLUSTER_VIP = os.environ.get("FACET_CLUSTER_VIP", "127.0.0.10")
# The Guest Tools Service's TLS ports (ngt/daemon/gate.py): open connections of one instance, TLS handshakes
# in progress (in all, and from one client address), and seconds a handshake may take.
GUEST_TOOLS_MAX_CONNECTIONS = int(os.environ.get("FACET_GUEST_TOOLS_MAX_CONNECTIONS", "20000"))
GUEST_TOOLS_MAX_HANDSHAKES = int(os.environ.get("FACET_GUEST_TOOLS_MAX_HANDSHAKES", "1000"))
GUEST_TOOLS_MAX_HANDSHAKES_PER_ADDRESS = int(os.environ.get("FACET_GUEST_TOOLS_MAX_HANDSHAKES_PER_ADDRESS", "200"))
GUEST_TOOLS_HANDSHAKE_TIMEOUT = float(os.environ.get("FACET_GUEST_TOOLS_HANDSHAKE_TIMEOUT", "10"))
# Where guests reach the console (a Docker host VM's plugin): on QEMU's user-mode networking the console's
# 127.0.0.1:8000 is 10.0.2.2:8000 to a guest.
GUEST_CONSOLE_URL = os.environ.get("FACET_GUEST_CONSOLE_URL", PUBLIC_URL).rstrip("/")
if not GUEST_CONSOLE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"FACET_GUEST_CONSOLE_URL must start with http:// or https://, "
                               f"not {GUEST_CONSOLE_URL!r}")


def _allowed_hosts(*urls: str) -> list[str]:
    """The hosts of the console's own URLs and this machine's names: a request naming any other Host (which
    Django would put in links and redirects) is refused."""
    hosts = [urlsplit(url).hostname for url in urls]
    hosts = [f"[{h}]" if h and ":" in h else h for h in hosts]  # Django writes IPv6 hosts in brackets
    return list(dict.fromkeys(h for h in [*hosts, "localhost", "127.0.0.1", "[::1]"] if h))


ALLOWED_HOSTS = ([h for h in os.environ["FACET_ALLOWED_HOSTS"].split(",") if h]
                 if os.environ.get("FACET_ALLOWED_HOSTS") else _allowed_hosts(PUBLIC_URL, GUEST_CONSOLE_URL))
if PUBLIC_URL.startswith("https://"):
    # Served over TLS by a reverse proxy that says so in X-Forwarded-Proto (it must: a proxy that does not
    # would see every request redirected to itself).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("FACET_HSTS_SECONDS", 365 * 24 * 3600))
    # Plain http is redirected to https, unless guests are told to use plain http (FACET_GUEST_CONSOLE_URL).
    SECURE_SSL_REDIRECT = os.environ.get(
        "FACET_SECURE_REDIRECT", "1" if GUEST_CONSOLE_URL.startswith("https://") else "0") == "1"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "console",
    "ngt",
    "customization",
    "containers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "console.core.body_limit.BodyLimitMiddleware",  # before anything (CSRF's form check) reads a body
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"
ASGI_APPLICATION = "console.asgi.application"

# Browser consoles (console/consoles/): their websockets are served by the ASGI tier (`manage.py serve` runs
# uvicorn beside gunicorn). FACET_WEBSOCKET_URL is where browsers open them: empty, the page's own origin (a
# reverse proxy sends /ws/ to the ASGI tier, docs/production.md); `serve` without a public URL sets it to its
# own ASGI port. A ticket is good for at most 30 s.
FACET_WEBSOCKET_URL = os.environ.get("FACET_WEBSOCKET_URL", "").rstrip("/")
FACET_CONSOLE_TICKET_SECONDS = min(30.0, float(os.environ.get("FACET_CONSOLE_TICKET_SECONDS", 30)))
FACET_CONSOLE_IDLE_SECONDS = float(os.environ.get("FACET_CONSOLE_IDLE_SECONDS", 900))
FACET_CONSOLE_SEND_TIMEOUT_SECONDS = float(os.environ.get("FACET_CONSOLE_SEND_TIMEOUT_SECONDS", 30))
FACET_CONSOLE_SERIAL_RATE = int(os.environ.get("FACET_CONSOLE_SERIAL_RATE", 256 * 1024))  # bytes a second
# Metrics (services/metrics.py): each host's worker samples its VMs every this many seconds.
FACET_METRICS_INTERVAL_SECONDS = float(os.environ.get("FACET_METRICS_INTERVAL_SECONDS", 20))

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.shell",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(
    os.environ.get("FACET_DATABASE_URL", f"sqlite:///{DATA_DIR / 'facet.sqlite3'}"), conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web tier read while a worker writes; IMMEDIATE takes the write lock at the
        # start of a transaction, so two writers wait (busy timeout) instead of failing half-way.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not memory, so that worker processes started by integration tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# The browser consoles' libraries, served from here, never from a CDN: noVNC from Debian's novnc package,
# xterm.js from npm (`make console-assets` unpacks it into the data directory).
CONSOLE_ASSET_DIRS = [("novnc/core", Path("/usr/share/novnc/core")), ("novnc/vendor", Path("/usr/share/novnc/vendor")),
                      ("xterm", DATA_DIR / "assets" / "xterm")]
STATICFILES_DIRS = [BASE_DIR / "static", *((prefix, str(path)) for prefix, path in CONSOLE_ASSET_DIRS if path.is_dir())]
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploads are streamed by our own code into the storage container; Django never buffers them.
FACET_IMAGE_UPLOAD_LIMIT = int(os.environ.get("FACET_IMAGE_UPLOAD_LIMIT", 64 * 1024**3))
# Every other request body: over this, 413 before it is read (console/core/body_limit.py).
FACET_REQUEST_BODY_LIMIT = int(os.environ.get("FACET_REQUEST_BODY_LIMIT", 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = FACET_REQUEST_BODY_LIMIT
# Images imported from a URL (console/services/image_import.py): a URL resolving to a loopback, link-local,
# private or otherwise non-public address is refused unless it lies in one of these networks (comma-separated
# CIDRs, e.g. 10.20.0.0/16 for a local mirror); the download is capped at the upload limit.
try:
    FACET_IMAGE_IMPORT_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n.strip()) for n in os.environ.get("FACET_IMAGE_IMPORT_ALLOWED_NETWORKS", "").split(",")
        if n.strip()]
except ValueError as exc:
    raise ImproperlyConfigured(f"FACET_IMAGE_IMPORT_ALLOWED_NETWORKS: {exc}") from None

# The libvirt driver's NICs: what carries each Facet network on the hypervisor hosts (a network not named gets
# QEMU's user-mode networking). A mistake stops every process here, saying what is wrong.
try:
    FACET_LIBVIRT_NETWORKS = parse_network_map(os.environ.get("FACET_LIBVIRT_NETWORKS", ""))
except NetworkMapError as exc:
    raise ImproperlyConfigured(f"FACET_LIBVIRT_NETWORKS: {exc}") from None

# Login attempts per client address, counted in Redis across every login path (services/login_attempts.py).
FACET_LOGIN_RATE = os.environ.get("FACET_LOGIN_RATE", "30/minute")

# Redis: the embedded default is the redis-server that `make run` starts on a unix socket, in the data
# directory so that two installations on one machine never share a broker (or a Guest Tools lease).
REDIS_URL = os.environ.get("FACET_REDIS_URL", f"unix://{DATA_DIR / 'redis.sock'}")


def _broker_url(redis_url: str) -> str:
    return "redis+socket://" + redis_url[len("unix://") :] if redis_url.startswith("unix://") else redis_url


CELERY_BROKER_URL = _broker_url(REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message a worker took from Redis and never acknowledged (it was killed, even before Celery said it had
# received it) goes back to its queue after this long; Redis checks every 10 s. A task running longer has
# its message given back too: that delivery finds the task claimed and is dropped (docs/production.md).
FACET_BROKER_REDELIVER_SECONDS = float(os.environ.get("FACET_BROKER_REDELIVER_SECONDS", 120))
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": FACET_BROKER_REDELIVER_SECONDS,
                                   "unacked_restore_throttle": 1}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Task bookkeeping: workers beat every FACET_TASK_HEARTBEAT_SECONDS; beat reaps tasks silent for longer
# than FACET_TASK_STALE_SECONDS, requeueing them up to FACET_TASK_MAX_ATTEMPTS times.
FACET_TASK_HEARTBEAT_SECONDS = float(os.environ.get("FACET_TASK_HEARTBEAT_SECONDS", 10))
FACET_TASK_STALE_SECONDS = float(os.environ.get("FACET_TASK_STALE_SECONDS", 60))
FACET_TASK_MAX_ATTEMPTS = int(os.environ.get("FACET_TASK_MAX_ATTEMPTS", 3))
# A guest shutdown through Guest Tools succeeds once the VM is off; a guest still running after this long fails it.
FACET_GUEST_SHUTDOWN_SECONDS = float(os.environ.get("FACET_GUEST_SHUTDOWN_SECONDS", 180))
FACET_REAP_INTERVAL_SECONDS = float(os.environ.get("FACET_REAP_INTERVAL_SECONDS", 15))
# Hosts: each host's worker writes its heartbeat every FACET_HOST_HEARTBEAT_SECONDS; beat's host check (every
# FACET_HOST_CHECK_SECONDS) marks a host unreachable once its worker was silent FACET_HOST_UNREACHABLE_SECONDS,
# which fails its tasks with "host unreachable": 30 + 10 s at most, within a minute.
FACET_HOST_HEARTBEAT_SECONDS = float(os.environ.get("FACET_HOST_HEARTBEAT_SECONDS", 5))
FACET_HOST_UNREACHABLE_SECONDS = float(os.environ.get("FACET_HOST_UNREACHABLE_SECONDS", 30))
FACET_HOST_CHECK_SECONDS = float(os.environ.get("FACET_HOST_CHECK_SECONDS", 10))
# The interface the Guest Tools leader adds the cluster VIP to while it leads (empty: the VIP is already on
# the machine, as on one machine's loopback), and the VIP's prefix length there.
FACET_CLUSTER_VIP_INTERFACE = os.environ.get("FACET_CLUSTER_VIP_INTERFACE", "")
FACET_CLUSTER_VIP_PREFIX = int(os.environ.get("FACET_CLUSTER_VIP_PREFIX", 32))
CELERY_BEAT_SCHEDULE = {
    "reap-stale-tasks": {"task": "facet.tasks.reap", "schedule": FACET_REAP_INTERVAL_SECONDS},
    "check-hosts": {"task": "facet.hosts.check", "schedule": FACET_HOST_CHECK_SECONDS},
    "reconcile-power-state": {"task": "facet.vms.reconcile", "schedule": 30.0},
    "sweep-tools-isos": {"task": "facet.ngt.sweep_tools_isos", "schedule": 600.0},
    "sample-metrics": {"task": "facet.metrics.sample", "schedule": FACET_METRICS_INTERVAL_SECONDS},
    "roll-up-metrics": {"task": "facet.metrics.roll_up", "schedule": 300.0},
    "expire-restore-disks": {"task": "facet.ngt.expire_restore_disks", "schedule": 60.0},
}
# A tools ISO no CD-ROM references is deleted by the sweep once it is older than this (a mount writes its ISO
# before the transaction a rerun repeats).
FACET_TOOLS_ISO_SWEEP_GRACE_SECONDS = float(os.environ.get("FACET_TOOLS_ISO_SWEEP_GRACE_SECONDS", 600))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "console.core.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["console.core.api.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "console.core.api.filters.StableOrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "console.core.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "console.core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "console.core.api.errors.exception_handler",
    # Behind a reverse proxy, FACET_NUM_PROXIES=1 makes login limits and the audit log use the client's address
    # it forwards (console/core/actors.py client_address); without it, X-Forwarded-For is ignored.
    "NUM_PROXIES": int(os.environ["FACET_NUM_PROXIES"]) if os.environ.get("FACET_NUM_PROXIES") else None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer",
                                 "rest_framework.renderers.BrowsableAPIRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Facet API",
    "DESCRIPTION": "REST API of the Facet console. Mutating calls answer 202 with the task that does the work.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are for signed-in users (any role): the API is no secret (the code is
    # open), but an outsider learns nothing of this installation's version and extensions from it.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("FACET_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
