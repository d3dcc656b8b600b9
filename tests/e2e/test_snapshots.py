"""Root filesystem snapshots: `sandbar snapshot import` of a busybox-only directory, and the
error for a snapshot that does not exist."""

from __future__ import annotations

import pytest
from daytona import (
    CreateSandboxFromSnapshotParams,
    DaytonaBadRequestError,
    DaytonaNotFoundError,
)

import support
from support import sh, state_of

pytestmark = pytest.mark.snapshots


def test_busybox_only_snapshot_runs_echo(server, daytona, create_sandbox, tmp_path):
    rootfs = support.build_busybox_rootfs(tmp_path / "rootfs")
    name = f"e2e-busybox-{support.short_id()}"
    support.import_snapshot(server.data_dir, name, rootfs)
    sb = create_sandbox(CreateSandboxFromSnapshotParams(snapshot=name))
    assert state_of(sb) == "started"
    assert sb.snapshot == name
    code, out = sh(sb, "echo hi")
    assert (code, out.strip()) == (0, "hi")
    code, out = sh(sb, "test -e /usr/bin/python3 && echo has-python || echo busybox-only; cat /proc/1/cmdline")
    assert out.startswith("busybox-only"), f"the busybox snapshot contains the default image's files: {out!r}"
    assert "sandbar" in out, "the agent is not PID 1 in the busybox snapshot"


def test_unknown_snapshot_is_refused(daytona):
    with pytest.raises((DaytonaNotFoundError, DaytonaBadRequestError)):
        daytona.create(CreateSandboxFromSnapshotParams(snapshot=f"e2e-no-such-snapshot-{support.short_id()}"), timeout=60)
