"""Config loader speed: full loads of the case-wanfed-gw secondary config, and parsing of one
large HCL file (many services), as loads per second and parsed KiB per second.

Run: .venv/bin/python bench/config/bench_config_load.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from wanfedtx.config import LoadOptions, load
from wanfedtx.config.hclparse import parse_hcl
from wanfedtx.config.schema import decode
from wanfedtx.config.sockaddr import IfAddr

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "case-wanfed-gw"
IFS = [IfAddr("eth0", "10.5.0.2", 16, up=True, loopback=False, default_route=True)]


def timed(fn: object, seconds: float) -> tuple[int, float]:
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()  # type: ignore[operator]
        n += 1
    return n, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        d = tmp / "secondary"
        d.mkdir()
        for f in ("base.hcl", "bind.hcl"):
            shutil.copy(DATA / f, d / f)
        for f in (DATA / "secondary").iterdir():
            shutil.copy(f, d / f.name)
        opts = LoadOptions(
            config_files=[str(d)],
            dev=True,
            flags={"datacenter": "secondary"},
            interfaces=lambda: IFS,
        )
        n, dt = timed(lambda: load(opts), args.seconds)
        print(
            f"case-wanfed-gw secondary full load: {n / dt:.0f} loads/s ({dt / n * 1e3:.2f} ms each)"
        )

        big = "".join(
            f'services {{\n  name = "svc{i}"\n  port = {1000 + i}\n  tags = ["a", "b"]\n'
            f'  meta {{ k = "v{i}" }}\n  check {{ ttl = "10s" }}\n}}\n'
            for i in range(1000)
        )
        kib = len(big) / 1024
        n, dt = timed(lambda: decode(parse_hcl(big, "big.hcl"), "big.hcl"), args.seconds)
        print(
            f"parse+decode of 1000 services ({kib:.0f} KiB): {n * kib / dt:.0f} KiB/s, "
            f"{dt / n * 1e3:.1f} ms per file"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
