# -*- test-case-name: tests.unit.gossip.test_gossip_serf -*-
"""A tiny metrics registry rendering Prometheus text format (counters, gauges and timers).

Names are given as the reference spells them (``rpc.cross-dc``) and rendered with the ``consul_``
prefix and ``.``/``-`` turned into ``_`` (``consul_rpc_cross_dc``). Components take a
``Registry`` (default: the process-wide ``REGISTRY``) so tests can use a fresh one::

    cross_dc = registry.counter("rpc.cross-dc", "RPCs forwarded to other datacenters",
                                ("datacenter",))
    cross_dc.inc(datacenter="dc2")
    text = registry.render()
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TypeVar

PREFIX = "consul"


def prometheus_name(name: str) -> str:
    """``rpc.cross-dc`` -> ``consul_rpc_cross_dc``."""
    return PREFIX + "_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def go_float(value: float) -> str:
    """``value`` as Prometheus' Go client writes it (``strconv.FormatFloat(v, 'g', -1, 64)``):
    the shortest digits that read back exactly, in exponent form when the exponent is below -4
    or at least 6 (``12345678`` -> ``1.2345678e+07``), and ``NaN``, ``+Inf``, ``-Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # digits before the decimal point
    neg = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{neg}{digits}{'0' * (point - len(digits))}"
    return f"{neg}{digits[:point]}.{digits[point:]}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}"
            )
        return tuple(str(labels[n]) for n in self.labelnames)

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        """``(label values, value)`` for every label set, sorted."""
        with self._lock:
            return sorted(self._values.items())

    def render(self) -> list[str]:
        pname = prometheus_name(self.name)
        lines = [f"# HELP {pname} {self.help}", f"# TYPE {pname} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        for key, val in items:
            if key:
                lbl = ",".join(
                    f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True)
                )
                lines.append(f"{pname}{{{lbl}}} {go_float(val)}")
            else:
                lines.append(f"{pname} {go_float(val)}")
        return lines


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class GaugeFunc(_Metric):
    """A gauge read from a function when rendered (no labels): e.g. queries parked right now."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help, labelnames)
        self.read: Callable[[], float] = lambda: 0.0

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        return [((), float(self.read()))]

    def render(self) -> list[str]:
        pname = prometheus_name(self.name)
        return [f"# HELP {pname} {self.help}", f"# TYPE {pname} {self.kind}",
                f"{pname} {go_float(float(self.read()))}"]


class Summary(_Metric):
    """A timer (go-metrics ``MeasureSince``): count and sum of observed seconds per label set,
    rendered as a Prometheus summary without quantiles."""

    kind = "summary"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help, labelnames)
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, seconds: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + 1
            self._sums[key] = self._sums.get(key, 0.0) + seconds

    def count(self, **labels: str) -> float:
        return self.value(**labels)

    def total(self, **labels: str) -> float:
        return self._sums.get(self._key(labels), 0.0)

    def samples(self) -> list[tuple[tuple[str, ...], float, float]]:
        """``(label values, count, sum of seconds)`` for every label set, sorted."""
        with self._lock:
            return sorted((k, v, self._sums.get(k, 0.0)) for k, v in self._values.items())

    def render(self) -> list[str]:
        pname = prometheus_name(self.name)
        lines = [f"# HELP {pname} {self.help}", f"# TYPE {pname} {self.kind}"]
        for key, count, total in self.samples():
            lbl = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True))
            braces = f"{{{lbl}}}" if lbl else ""
            lines.append(f"{pname}_sum{braces} {go_float(total)}")
            lines.append(f"{pname}_count{braces} {go_float(count)}")
        return lines


M = TypeVar("M", bound=_Metric)


class Registry:
    """Holds metrics by name; asking twice for one name returns the same metric."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, help, labelnames)

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, help, labelnames)

    def gauge_func(self, name: str, help: str, read: Callable[[], float]) -> GaugeFunc:
        """A gauge whose value ``read()`` gives at render time (the latest ``read`` wins)."""
        metric = self._get(GaugeFunc, name, help, ())
        metric.read = read
        return metric

    def summary(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Summary:
        return self._get(Summary, name, help, labelnames)

    def metrics(self) -> list[_Metric]:
        return [self._metrics[n] for n in sorted(self._metrics)]

    def _get(self, cls: type[M], name: str, help: str, labelnames: Sequence[str]) -> M:
        existing = self._metrics.get(name)
        if existing is None:
            metric = cls(name, help, labelnames)
            self._metrics[name] = metric
            return metric
        if not isinstance(existing, cls) or existing.labelnames != tuple(labelnames):
            raise ValueError(f"metric {name} is already registered with another type or labels")
        return existing

    def render(self) -> str:
        """All metrics in Prometheus text exposition format."""
        lines: list[str] = []
        for name in sorted(self._metrics):
            lines.extend(self._metrics[name].render())
        return "\n".join(lines) + "\n"


REGISTRY = Registry()
