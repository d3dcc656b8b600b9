"""Root filesystem snapshots: `sandbar snapshot import` of a busybox-only directory (imported
before the server starts, and while it runs), and the error for a snapshot that does not exist."""

from __future__ import annotations

import pytest
from daytona import (
    CreateSandboxFromSnapshotParams,
    DaytonaBadRequestError,
    DaytonaNotFoundError,
)

import support
from support import make_client, sh, state_of

pytestmark = pytest.mark.snapshots


def check_busybox_sandbox(client, name: str, data_dir) -> None:
    sb = client.create(CreateSandboxFromSnapshotParams(snapshot=name), timeout=120)
    try:
        assert state_of(sb) == "started"
        assert sb.snapshot == name
        code, out = sh(sb, "echo hi")
        assert (code, out.strip()) == (0, "hi")
        code, out = sh(sb, "test -e /usr/bin/python3 && echo has-python || echo busybox-only; cat /proc/1/cmdline")
        assert out.startswith("busybox-only"), f"the busybox snapshot contains the default image's files: {out!r}"
        assert "sandbar" in out, "the agent is not PID 1 in the busybox snapshot"
    finally:
        client.delete(sb, timeout=60)
    support.assert_no_leaks(sb.id, data_dir)


def test_busybox_only_snapshot_runs_echo(server_factory, tmp_path):
    rootfs = support.build_busybox_rootfs(tmp_path / "rootfs")
    srv = server_factory.new("busybox", start=False)
    name = f"e2e-busybox-{support.short_id()}"
    support.import_snapshot(srv.data_dir, name, rootfs)
    srv.start()
    try:
        check_busybox_sandbox(make_client(srv), name, srv.data_dir)
    finally:
        server_factory.shutdown(srv)
        server_factory.servers.remove(srv)


def test_snapshot_imported_while_the_server_runs_is_usable(server, daytona, tmp_path):
    rootfs = support.build_busybox_rootfs(tmp_path / "rootfs")
    name = f"e2e-busybox-live-{support.short_id()}"
    support.import_snapshot(server.data_dir, name, rootfs)
    check_busybox_sandbox(daytona, name, server.data_dir)


def test_unknown_snapshot_is_refused(daytona):
    with pytest.raises((DaytonaNotFoundError, DaytonaBadRequestError)):
        daytona.create(CreateSandboxFromSnapshotParams(snapshot=f"e2e-no-such-snapshot-{support.short_id()}"), timeout=60)
