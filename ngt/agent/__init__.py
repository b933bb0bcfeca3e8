"""Facet Guest Tools agent: runs inside a guest, standard library only (Python 3.9+), no Django."""

AGENT_VERSION = "1.0.0"
