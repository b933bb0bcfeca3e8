"""facet-volume-plugin: a Docker volume plugin (legacy protocol) backed by Facet volume groups.

Standard library only: it runs on Docker hosts, not in the console."""

VERSION = "0.3.0"
