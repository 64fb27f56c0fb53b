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

import decimal
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

PREFIX = "consul"
# Names under this prefix are exported as given (``process_resident_memory_bytes``), as Go's
# client library exports its process collector.
UNPREFIXED = ("process_",)


def prometheus_name(name: str) -> str:
    """``rpc.cross-dc`` -> ``consul_rpc_cross_dc``; ``process_*`` names stay as they are."""
    clean = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    if name.startswith(UNPREFIXED):
        return clean
    return PREFIX + "_" + clean


def go_float(value: float) -> str:
    """``value`` as Go's Prometheus client writes it: ``strconv.FormatFloat(v, 'g', -1, 64)``.

    The shortest digits that read back as the same float, so large counters stay exact
    (12345678 is ``1.2345678e+07``, never ``1.23457e+07``); the exponent form when the decimal
    exponent is below -4 or at least 6 (Go's rule for the shortest format), with at least two
    exponent digits; ``0``, ``NaN``, ``+Inf`` and ``-Inf`` as Prometheus spells them.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digit_tuple, exp = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    if not isinstance(exp, int):  # finite values only reach here
        return repr(value)
    digits = "".join(str(d) for d in digit_tuple)
    point = len(digits) + exp  # how many digits stand before the decimal point
    x = point - 1  # decimal exponent of the first digit
    prefix = "-" if sign else ""
    if x < -4 or x >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


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
        if not labels and not self.labelnames:  # the common case, without building two sets
            return ()
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


class GaugeVecFunc(GaugeFunc):
    """A labelled gauge read when rendered: ``read()`` gives ``{label values: value}`` (e.g. the
    age of each datacenter's federation state). A read that fails renders no sample."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help, labelnames)
        self.read_all: Callable[[], Mapping[tuple[str, ...], float]] = dict

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        try:
            values = self.read_all()
        except Exception:  # a scrape never fails because one reader did
            return []
        return sorted((tuple(k), float(v)) for k, v in values.items())

    def render(self) -> list[str]:
        pname = prometheus_name(self.name)
        lines = [f"# HELP {pname} {self.help}", f"# TYPE {pname} {self.kind}"]
        for key, val in self.items():
            lbl = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True))
            lines.append(f"{pname}{{{lbl}}} {go_float(val)}")
        return lines


class CounterFunc(GaugeFunc):
    """A counter read from a function when rendered (e.g. CPU seconds used so far)."""

    kind = "counter"


class Summary(_Metric):
    """A timer (go-metrics ``MeasureSince``): count and sum of observed durations per label set.

    ``observe`` takes seconds; the Prometheus summary (no quantiles) carries the sum in
    milliseconds, the unit Consul's go-metrics timers report in, like the JSON summary."""

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
            lines.append(f"{pname}_sum{braces} {go_float(total * 1000.0)}")
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

    def gauge_vec_func(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> GaugeVecFunc:
        """A labelled gauge whose samples ``read()`` gives at render time (the latest wins)."""
        metric = self._get(GaugeVecFunc, name, help, labelnames)
        metric.read_all = read
        return metric

    def counter_func(self, name: str, help: str, read: Callable[[], float]) -> CounterFunc:
        """A counter whose value ``read()`` gives at render time (the latest ``read`` wins)."""
        metric = self._get(CounterFunc, name, help, ())
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
