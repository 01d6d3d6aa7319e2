"""Tongxin's benchmark harness: open-loop load, end-to-end latency, the raw baseline.

Run it as ``python -m bench`` (see ``bench/README.md``).
"""
