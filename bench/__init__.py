"""Benchmarks. Not part of the installed package: scripts here put the repository root on sys.path."""
