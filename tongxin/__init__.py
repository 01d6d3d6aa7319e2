"""Tongxin 同心 — shared kernel: contracts, runtime and local dev stack."""

__version__ = "0.1.0"
