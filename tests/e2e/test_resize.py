"""`sandbox.resize(Resources(...))` (POST /api/sandbox/{id}/resize) through the real SDK: a
started sandbox gets its new CPU quota and memory limit live (read back inside, where the
sandbox sees its own cgroups read-only at /sys/fs/cgroup), a memory limit below what it uses is
refused, disk cannot change, and a stopped sandbox picks the new limits up at its next start."""

from __future__ import annotations

import httpx
import pytest
from daytona import DaytonaError, DaytonaValidationError, Resources

import support
from support import python_cmd, sh, state_of

RUN = support.short_id()
GIB = 1024**3

pytestmark = [pytest.mark.timeout(300), pytest.mark.lifecycle]


def read_limits(sb) -> tuple[int, int]:
    """(memory limit in bytes, CFS quota in microseconds) as the sandbox sees them."""
    code, out = sh(
        sb,
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "cut -d' ' -f1 /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu*/cpu.cfs_quota_us | head -n1",
    )
    assert code == 0, out
    memory, quota = out.split()
    return int(memory), int(quota)


def memory_in_use(sb) -> int:
    code, out = sh(
        sb,
        "cat /sys/fs/cgroup/memory.current 2>/dev/null || cat /sys/fs/cgroup/memory/memory.usage_in_bytes",
    )
    assert code == 0, out
    return int(out.strip())


def test_resize_live_refusals_and_at_next_start(daytona, create_sandbox):
    sb = create_sandbox()
    assert (sb.cpu, sb.memory) == (1, 1)
    assert read_limits(sb) == (1 * GIB, 100_000)

    # Live: the limits change inside the running sandbox and on the SDK object.
    sb.resize(Resources(cpu=2, memory=3))
    assert (sb.cpu, sb.memory, state_of(sb)) == (2, 3, "started")
    assert read_limits(sb) == (3 * GIB, 200_000)
    again = daytona.get(sb.id)
    assert (again.cpu, again.memory, again.disk) == (2, 3, sb.disk)

    # A memory limit below what the sandbox uses now is refused and changes nothing.
    hog = python_cmd("import time\nb = b'x' * (1400 << 20)\nopen('/tmp/hog-ready', 'w').close()\ntime.sleep(120)")
    assert sh(sb, f"nohup {hog} >/dev/null 2>&1 & echo $! > /tmp/hog.pid")[0] == 0
    support.wait_until(lambda: memory_in_use(sb) > 1400 * 1024 * 1024, 30, 0.3, "the sandbox to use 1.4 GiB")
    with pytest.raises(DaytonaValidationError) as refused:
        sb.resize(Resources(memory=1))
    assert "more than the new limit" in str(refused.value), refused.value
    assert read_limits(sb)[0] == 3 * GIB
    assert daytona.get(sb.id).memory == 3
    assert sh(sb, "kill $(cat /tmp/hog.pid); sync; echo 1 > /dev/null")[0] == 0
    support.wait_until(lambda: memory_in_use(sb) < 900 * 1024 * 1024, 30, 0.3, "the memory to be freed")
    sb.resize(Resources(memory=1))
    assert read_limits(sb)[0] == 1 * GIB and sb.memory == 1

    # Disk cannot change (no per-sandbox disk quota); the same value is accepted.
    with pytest.raises(DaytonaValidationError) as disk:
        sb.resize(Resources(disk=sb.disk + 5))
    assert "no per-sandbox disk quota" in str(disk.value), disk.value
    sb.resize(Resources(cpu=1, disk=sb.disk))
    assert read_limits(sb)[1] == 100_000
    # GPU is refused by the SDK itself; an empty request by the server.
    with pytest.raises(DaytonaError):
        sb.resize(Resources())

    # Stopped: recorded now, applied by the next start.
    sb.stop()
    sb.resize(Resources(cpu=3, memory=2))
    assert (sb.cpu, sb.memory) == (3, 2)
    sb.start()
    assert read_limits(sb) == (2 * GIB, 300_000)



def test_resize_over_raw_http(server, create_sandbox):
    sb = create_sandbox()
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.api_url, headers=headers, timeout=60) as c:
        r = c.post(f"/sandbox/{sb.id}/resize", json={"memory": 2})
        assert r.status_code == 200, r.text
        assert (r.json()["memory"], r.json()["cpu"], r.json()["state"]) == (2, 1, "started")
        r = c.post(f"/sandbox/{sb.id}/resize", json={"disk": 999})
        assert r.status_code == 400 and r.json()["message"].find("disk quota") > 0, r.text
        r = c.post(f"/sandbox/no-such-sandbox-{RUN}/resize", json={"cpu": 2})
        assert r.status_code == 404, r.text
    assert read_limits(sb)[0] == 2 * GIB
