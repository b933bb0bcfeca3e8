"""The plugin's .deb: built with dpkg-deb, standard library only, served to Docker hosts by the console."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "containers" / "plugin" / "packaging" / "build-deb.sh"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    if not shutil.which("dpkg-deb"):
        print("SKIP plugin package tests: dpkg-deb is not installed", file=sys.stderr)
        pytest.skip("dpkg-deb is not installed")
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run(["sh", str(BUILD), str(out)], capture_output=True, text=True, check=True).stdout.strip()
    return Path(built)


def test_the_package_holds_the_daemon_its_unit_and_its_launcher(package):
    assert package.name == "facet-volume-plugin_0.3.0_all.deb"
    field = lambda name: subprocess.run(["dpkg-deb", "--field", str(package), name], capture_output=True,  # noqa: E731
                                        text=True, check=True).stdout.strip()
    assert (field("Package"), field("Architecture")) == ("facet-volume-plugin", "all")
    assert "python3" in field("Depends") and "e2fsprogs" in field("Depends")
    contents = subprocess.run(["dpkg-deb", "--contents", str(package)], capture_output=True, text=True).stdout
    for path in ("./usr/bin/facet-volume-plugin", "./lib/systemd/system/facet-volume-plugin.service",
                 "./usr/lib/facet-volume-plugin/containers/plugin/__main__.py"):
        assert path in contents, path
    assert "models.py" not in contents and "services" not in contents  # the plugin alone, not the console


def test_the_packaged_plugin_runs_on_the_standard_library_alone(package, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(package), str(tmp_path)], check=True)
    lib = tmp_path / "usr" / "lib" / "facet-volume-plugin"
    # -S: no site-packages, so Django or anything else installed cannot be imported by accident.
    done = subprocess.run([sys.executable, "-S", "-m", "containers.plugin"], cwd=lib, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert done.returncode == 2 and "set FACET_URL, FACET_TOKEN, FACET_DOCKER_HOST" in done.stderr


def test_the_console_serves_the_package_to_docker_hosts_only(package, docker_host, api, settings):
    from .test_api import host_client

    url = "/api/v1/docker-host/plugin.deb"
    assert host_client(docker_host.key).get(url).status_code == 404  # not built into the data directory yet
    (Path(settings.DATA_DIR) / "packages").mkdir(parents=True)
    shutil.copy(package, Path(settings.DATA_DIR) / "packages" / "facet-volume-plugin.deb")
    answer = host_client(docker_host.key).get(url)
    assert answer.status_code == 200 and b"".join(answer.streaming_content) == package.read_bytes()
    assert api.get(url).status_code == 401
