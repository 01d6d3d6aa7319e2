"""Every Prometheus metric the code exports, collected from the real metrics classes.

The runtime's :class:`tongxin.runtime.metrics.Metrics` and each service's
``services/<name>/metrics.py`` classes (and those of a mounted package such as
``tongxin/accounts/metrics.py``) are built on one fresh ``CollectorRegistry``; what
they register is the catalogue. Nothing is listed by hand, so a metric added to the code is
in the catalogue at once (and docs/operations.md must then describe it).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from tongxin.runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
# Series Prometheus itself adds to every scrape target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# The metric names a PromQL expression reads; a word match is enough without a parser.
PROMQL_METRIC = re.compile(r"\b(tongxin_[a-z0-9_]+|up|scrape_[a-z_]+)\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


@dataclass(frozen=True)
class MetricInfo:
    """One exported metric family."""

    name: str  # as in the exposition: counters with their _total
    type: str
    labels: tuple[str, ...]
    help: str
    module: str

    @property
    def series(self) -> tuple[str, ...]:
        """The sample names PromQL can select."""
        base = self.name.removesuffix("_total") if self.type == "counter" else self.name
        return tuple(base + s for s in SUFFIXES[self.type])


def _service_metric_classes() -> list[type]:
    classes: list[type] = []
    # the services' metrics, and those of the packages a service mounts (tongxin/accounts)
    paths = sorted((ROOT / "services").glob("*/metrics.py"))
    paths += [
        p for p in sorted((ROOT / "tongxin").glob("*/metrics.py")) if p.parent.name != "runtime"
    ]
    for path in paths:
        module = importlib.import_module(f"{path.parent.parent.name}.{path.parent.name}.metrics")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and cls.__name__.endswith("Metrics"):
                classes.append(cls)
    return classes


def _build(cls: type, registry: CollectorRegistry) -> Any:
    """An instance on ``registry``; other required arguments get empty values."""
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name == "registry":
            kwargs[name] = registry
        elif param.default is inspect.Parameter.empty:
            kwargs[name] = ()
    return cls(**kwargs)


def _wrappers(obj: Any) -> list[MetricWrapperBase]:
    found: list[MetricWrapperBase] = []
    for value in vars(obj).values():
        values = value.values() if isinstance(value, dict) else [value]
        found += [v for v in values if isinstance(v, MetricWrapperBase)]
    return found


def exported_metrics() -> dict[str, MetricInfo]:
    """name → info for every metric the runtime and the four services register."""
    registry = CollectorRegistry()
    owners: list[Any] = [Metrics("catalogue", registry)]
    owners += [_build(cls, registry) for cls in _service_metric_classes()]
    out: dict[str, MetricInfo] = {}
    for owner in owners:
        for m in _wrappers(owner):
            kind = str(m._type)
            name = m._name + ("_total" if kind == "counter" else "")
            out[name] = MetricInfo(
                name, kind, tuple(m._labelnames), m._documentation, type(owner).__module__
            )
    # Whatever the registry holds must have been found on the objects (nothing registered
    # some other way is missing from the catalogue).
    families = {f.name for f in registry.collect()}
    found = {i.name.removesuffix("_total") if i.type == "counter" else i.name for i in out.values()}
    assert families == found, families ^ found
    return out


def exported_series() -> set[str]:
    """Every sample name a PromQL query may read from the services or the scrape."""
    names = set(SCRAPE_SERIES)
    for info in exported_metrics().values():
        names.update(info.series)
    return names
