"""Measurements printed in the summary, never asserted: create-to-first-exec over ~10 sandboxes,
exec round trip on a running sandbox, and delete time."""

from __future__ import annotations

import statistics
import time

import pytest

import support

pytestmark = pytest.mark.perf

ROUNDS = 10


def fmt(samples: list[float]) -> str:
    s = sorted(samples)
    return (
        f"median {statistics.median(s) * 1000:7.1f} ms   min {s[0] * 1000:7.1f} ms   "
        f"max {s[-1] * 1000:7.1f} ms   (n={len(s)})"
    )


def test_measure_create_to_first_exec(daytona):
    first_exec, create_only, delete = [], [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        sb = daytona.create(timeout=120)
        t1 = time.perf_counter()
        r = sb.process.exec("true")
        t2 = time.perf_counter()
        assert r.exit_code == 0
        daytona.delete(sb, timeout=60)
        t3 = time.perf_counter()
        first_exec.append(t2 - t0)
        create_only.append(t1 - t0)
        delete.append(t3 - t2)
    sb = daytona.create(timeout=120)
    try:
        exec_rt = []
        for _ in range(20):
            t0 = time.perf_counter()
            sb.process.exec("true")
            exec_rt.append(time.perf_counter() - t0)
    finally:
        daytona.delete(sb, timeout=60)
    lines = [
        f"create -> first exec done : {fmt(first_exec)}",
        f"create (SDK returns)      : {fmt(create_only)}",
        f"exec `true` round trip    : {fmt(exec_rt)}",
        f"delete (SDK returns)      : {fmt(delete)}",
    ]
    support.PERF_LINES.extend(lines)
    print("\n".join(lines))
