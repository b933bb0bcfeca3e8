# Facet: `make run` sets up everything and serves the console; `make test` sets up and runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export FACET_DATA_DIR ?= $(CURDIR)/var
# Debian packages the console and its tests need; apt-get installs them when we are root. The Guest Tools
# agent's .rpm, which every tools ISO carries, is built with rpm's rpmbuild.
SYSTEM_PACKAGES := redis-server genisoimage rpm
# The browser consoles' libraries, served by the console itself: noVNC from Debian, xterm.js through npm
# (Debian's libjs-xterm is a stub without its bundle).
CONSOLE_PACKAGES := novnc
XTERM_PACKAGES := @xterm/xterm@5.5.0 @xterm/addon-fit@0.10.0
CONSOLE_ASSETS := $(FACET_DATA_DIR)/assets
# The libvirt driver: libvirtd with its QEMU driver, QEMU and qemu-img, and what libvirt-python compiles against.
LIBVIRT_PACKAGES := libvirt-daemon-system qemu-system-x86 qemu-utils libvirt-dev pkg-config
# The browser tests need chromium; the volume plugin's real-parts tests a dockerd, busybox for an offline
# image and xfsprogs for mkfs.xfs; the live migration test bindfs, for a storage container libvirt takes as shared.
TEST_SYSTEM_PACKAGES := chromium docker.io busybox-static xfsprogs bindfs
# The real-QEMU tests' Debian guest (tests/guest_image.py): debootstrap, and syslinux on a FAT partition
# made without mounting.
GUEST_IMAGE_PACKAGES := debootstrap syslinux syslinux-common mtools dosfstools
PLUGIN_DEB := $(FACET_DATA_DIR)/packages/facet-volume-plugin.deb
# The tools ISO's installer/ tree (linux/ and windows/), built from ngt/agent/ on each host that makes ISOs.
GUEST_TOOLS_PACKAGES := $(FACET_DATA_DIR)/packages/guest-tools
# cloud-init's own JSON schema, to validate #cloud-config: unpacked from Debian's cloud-init package (not installed).
export FACET_CLOUD_INIT_DIR ?= $(CURDIR)/var/cache/cloud-init
CLOUD_INIT_SCHEMA := $(FACET_CLOUD_INIT_DIR)/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json

.PHONY: run test setup console-assets npm-package system-packages test-system-packages cloud-init-schema plugin-deb guest-tools-packages guest-image lint bench bench-volume-plugin clean

run: setup plugin-deb guest-tools-packages
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py collectstatic --no-input -v0
	$(PY) manage.py seed_demo
	$(PY) manage.py serve --port $(PORT)

test: setup test-system-packages
	$(PY) manage.py collectstatic --no-input -v0
	$(VENV)/bin/pytest $(PYTEST_ARGS)

setup: system-packages $(VENV)/.installed cloud-init-schema console-assets

npm-package:
	$(call ensure_packages,npm)

# xterm.js and its fit addon, unpacked from their npm packages into the data directory (settings.py serves
# them as static files under xterm/).
console-assets: $(CONSOLE_ASSETS)/xterm/.installed
$(CONSOLE_ASSETS)/xterm/.installed: | system-packages
	@# npm from Debian unless one is installed already (a Node.js of another origin conflicts with Debian's npm)
	@command -v npm >/dev/null || $(MAKE) --no-print-directory npm-package
	rm -rf $(CONSOLE_ASSETS)/xterm && mkdir -p $(CONSOLE_ASSETS)/xterm
	work=$$(mktemp -d) && cd "$$work" && npm pack --silent $(XTERM_PACKAGES) >/dev/null && \
	  for tarball in *.tgz; do tar xzf "$$tarball" -C $(CONSOLE_ASSETS)/xterm --strip-components=1 package/lib package/css 2>/dev/null || \
	    tar xzf "$$tarball" -C $(CONSOLE_ASSETS)/xterm --strip-components=1 package/lib; done && rm -rf "$$work"
	touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,libvirt]'
	touch $@

define ensure_packages
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "Facet needs these Debian packages:$$missing"; \
	    echo "install them with: sudo apt-get install$$missing   (then run make again)"; exit 1; \
	  fi; \
	fi
endef

system-packages:
	$(call ensure_packages,$(SYSTEM_PACKAGES) $(CONSOLE_PACKAGES) $(LIBVIRT_PACKAGES))
	@# Without the kvm group's access libvirt probes QEMU again (~50 s) on every call.
	@if [ -c /dev/kvm ] && [ "$$(id -u)" = 0 ]; then chown root:kvm /dev/kvm && chmod 0660 /dev/kvm; fi

test-system-packages:
	$(call ensure_packages,$(TEST_SYSTEM_PACKAGES) $(GUEST_IMAGE_PACKAGES))

# The Debian guests of the real-QEMU tests (a plain one, and a Docker host), cached outside the checkout
# (FACET_GUEST_IMAGE_DIR, default /var/cache/facet/guest-image) and rebuilt only when their recipe changes;
# the tests build them too when missing.
guest-image: test-system-packages
	$(PY) tests/guest_image.py base
	$(PY) tests/guest_image.py docker-host

# Without the schema the console still runs: cloud-config gets YAML checks only, and says so.
cloud-init-schema:
	@if [ ! -f "$(CLOUD_INIT_SCHEMA)" ]; then 	  work=$$(mktemp -d); 	  if command -v apt-get >/dev/null && command -v dpkg >/dev/null && cd "$$work" && 	     { apt-get download -qq cloud-init 2>/dev/null || 	       { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq cloud-init 2>/dev/null; }; } && 	     mkdir -p "$(FACET_CLOUD_INIT_DIR)" && dpkg -x cloud-init_*.deb "$(FACET_CLOUD_INIT_DIR)"; then 	    echo "cloud-init's schema unpacked in $(FACET_CLOUD_INIT_DIR)"; 	  else 	    echo "could not fetch Debian's cloud-init package (needs apt-get and dpkg; as non-root, run apt-get update first):"; 	    echo "  #cloud-config scripts get YAML checks only until 'make cloud-init-schema' succeeds"; 	  fi; 	  rm -rf "$$work"; 	fi

# The volume plugin's .deb, served by the console to the Docker hosts it creates.
plugin-deb: $(PLUGIN_DEB)
$(PLUGIN_DEB): $(wildcard containers/plugin/*.py containers/plugin/packaging/*)
	sh containers/plugin/packaging/build-deb.sh $(dir $@)

# The Guest Tools agent's packages (.deb, .rpm, tarball, install.sh; the Windows agent and install.ps1), as
# tools ISOs carry them under installer/. Rebuilt whenever the agent's source changes.
guest-tools-packages: $(GUEST_TOOLS_PACKAGES)/.built
$(GUEST_TOOLS_PACKAGES)/.built: $(wildcard ngt/agent/*.py ngt/agent/*.service ngt/agent/packaging/* ngt/agent/packaging/*/*) | system-packages
	$(PYTHON) ngt/agent/packaging/build.py $(GUEST_TOOLS_PACKAGES) >/dev/null
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/api_list.py
	$(PY) bench/ngt_bulk_mount.py
	$(PY) bench/customization_media.py

# Needs root, dockerd and loop devices.
bench-volume-plugin: setup test-system-packages
	$(PY) bench/volume_plugin.py

clean:
	rm -rf $(VENV) var .pytest_cache
