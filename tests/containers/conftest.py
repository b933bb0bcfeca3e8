"""Fixtures of the container services tests: a Docker host registered in the test cluster, and for the real
parts a dockerd of the session's own with the plugin started per test against the live console."""

import shutil
import signal
import uuid

import pytest

from containers.services import docker_hosts

from .realdocker import Docker, Namespace, Plugin, release_devices, short_tempdir, skip_without_parts


@pytest.fixture
def docker_host(cluster, actor):
    """A registered machine that has said hello and sees the test's storage container; with its key."""
    host, key = docker_hosts.register(actor, "dh-1", address="127.0.0.1")
    storage_container = cluster.storage_containers.get()
    docker_hosts.hello(host, docker_version="test", plugin_version="test",
                       probes={str(storage_container.uuid): host.probe_file(storage_container).read_text()})
    host.key = key
    return host


@pytest.fixture(scope="session")
def docker_world():
    skip_without_parts()
    root = short_tempdir("facet-dk-")
    (root / "plugins").mkdir()
    namespace = Namespace(root / "plugins")
    docker = None
    try:
        docker = Docker(root, namespace)
        yield namespace, docker, root
    finally:
        if docker is not None:
            docker.close()
        namespace.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def console_url(live_server) -> str:
    """Where the plugin finds the console (fault tests put a proxy in between)."""
    return live_server.url


@pytest.fixture
def plugin(docker_world, console_url, celery_processes, docker_host, cluster, request):
    """The plugin of Docker host dh-1 against the live console, with a real Celery worker running tasks."""
    namespace, docker, root = docker_world
    celery_processes.worker()
    plugin_root = root / f"p-{uuid.uuid4().hex[:8]}"
    plugin_root.mkdir()
    running = Plugin(namespace, plugin_root, {
        "FACET_URL": console_url, "FACET_TOKEN": docker_host.key, "FACET_DOCKER_HOST": docker_host.name,
        "FACET_DEFAULT_CONTAINER": "default", "FACET_REPORT_SECONDS": "1"})
    running.docker = docker
    running.start()
    yield running
    running.kill(signal.SIGTERM)
    release_devices(namespace, plugin_root / "volumes", cluster.storage_containers.get().resolve(""))
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(running.logs())
