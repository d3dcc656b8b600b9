"""Lifecycle (create → stop → start → delete) and crash safety: server restarts with running
sandboxes, sandboxes dying behind the server's back, and kill -9 in the middle of a create."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from daytona import CreateSandboxFromSnapshotParams, DaytonaError, DaytonaNotFoundError

import support
from support import make_client, sh, state_of


def assert_gone(client, sandbox_id: str) -> None:
    """After a delete the API answers 404, or reports the sandbox `destroyed`."""
    try:
        sb = client.get(sandbox_id)
    except DaytonaNotFoundError:
        return
    assert state_of(sb) in ("destroyed", "destroying"), f"deleted sandbox is still {state_of(sb)}"


def wait_for_state(client, sandbox_id: str, states: tuple[str, ...], timeout: float = 30):
    def check():
        sb = client.get(sandbox_id)
        return sb if state_of(sb) in states else None

    return support.wait_until(check, timeout, 0.25, f"sandbox {sandbox_id} to reach {states}")


# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------


@pytest.mark.lifecycle
def test_create_stop_start_delete_keeps_files_and_leaves_nothing(server, daytona):
    sb = daytona.create(timeout=120)
    try:
        assert state_of(sb) == "started"
        assert (server.data_dir / "sandboxes" / sb.id).is_dir(), "no data directory for a running sandbox"
        support.sandbox_init(sb.id)  # a PID 1 exists in its cgroup
        code, out = sh(sb, "echo kept > ~/kept.txt && mkdir -p ~/deep/dir && echo deep > ~/deep/dir/f && echo ok")
        assert code == 0, out
        sb.fs.upload_file(b"uploaded bytes", "uploaded.bin")

        sb.stop(timeout=60)
        assert state_of(sb) == "stopped"
        assert state_of(daytona.get(sb.id)) == "stopped"
        support.wait_until(
            lambda: not support.sandbox_host_pids(sb.id), 10, what="no process left in the stopped sandbox's cgroup"
        )
        assert (server.data_dir / "sandboxes" / sb.id).is_dir(), "stopping removed the sandbox's data directory"
        with pytest.raises(DaytonaError):
            sb.process.exec("echo should-not-run", timeout=10)

        sb.start(timeout=60)
        assert state_of(sb) == "started"
        code, out = sh(sb, "cat ~/kept.txt ~/deep/dir/f")
        assert (code, out.split()) == (0, ["kept", "deep"]), "files written before stop are gone after start"
        assert sb.fs.download_file("uploaded.bin") == b"uploaded bytes"
    finally:
        daytona.delete(sb, timeout=60)
    assert_gone(daytona, sb.id)
    support.assert_no_leaks(sb.id, server.data_dir)


@pytest.mark.lifecycle
def test_delete_stopped_sandbox_leaves_nothing(server, daytona):
    sb = daytona.create(timeout=120)
    sb.stop(timeout=60)
    daytona.delete(sb, timeout=60, wait=True)
    assert_gone(daytona, sb.id)
    support.assert_no_leaks(sb.id, server.data_dir)


@pytest.mark.lifecycle
def test_background_process_outlives_the_exec_call(create_sandbox):
    sb = create_sandbox()
    code, out = sh(sb, "nohup sleep 4321 >/dev/null 2>&1 & echo started")
    assert code == 0 and "started" in out
    code, out = sh(sb, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^sleep 4321'")
    assert out.strip() not in ("", "0"), "a background process started by exec did not survive the call"


# ---------------------------------------------------------------------------------------------
# Crash safety
# ---------------------------------------------------------------------------------------------


@pytest.mark.crash
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_running_sandbox_survives_server_restart(private_server, how):
    srv = private_server
    d = make_client(srv)
    sb = d.create(timeout=120)
    code, out = sh(sb, "echo before > ~/before.txt && (nohup sleep 1234 >/dev/null 2>&1 &) && echo ok")
    assert code == 0, out
    init_before = support.sandbox_init(sb.id)

    if how == "sigterm":
        srv.stop(signal.SIGTERM, timeout=30)
    else:
        srv.kill9()
    os.kill(init_before[0], 0)  # raises if the sandbox died with the server
    assert support.proc_start_time(init_before[0]) == init_before[1]

    srv.start()
    d2 = make_client(srv)
    sb2 = d2.get(sb.id)
    assert state_of(sb2) == "started", f"after a {how} restart the sandbox is {state_of(sb2)} ({sb2.error_reason})"
    assert support.sandbox_init(sb.id) == init_before, "the sandbox's PID 1 changed across the server restart"
    code, out = sh(sb2, "cat ~/before.txt; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^sleep 1234'")
    assert code == 0 and out.split() == ["before", "1"], f"after restart: {out!r}"
    d2.delete(sb2, timeout=60)
    support.assert_no_leaks(sb.id, srv.data_dir)


@pytest.mark.crash
def test_stopped_sandbox_stays_stopped_across_restart(private_server):
    srv = private_server
    d = make_client(srv)
    sb = d.create(timeout=120)
    sh(sb, "echo kept > ~/kept.txt")
    sb.stop(timeout=60)
    srv.restart(signal.SIGTERM)
    d2 = make_client(srv)
    sb2 = d2.get(sb.id)
    assert state_of(sb2) == "stopped"
    assert not support.sandbox_host_pids(sb.id)
    sb2.start(timeout=60)
    assert sh(sb2, "cat ~/kept.txt")[1].strip() == "kept"
    d2.delete(sb2, timeout=60)
    support.assert_no_leaks(sb.id, srv.data_dir)


@pytest.mark.crash
def test_sandbox_killed_behind_the_servers_back_reports_error(server, daytona):
    sb = daytona.create(timeout=120)
    assert support.kill_sandbox_processes(sb.id), "found no host process of the sandbox to kill"
    errored = wait_for_state(daytona, sb.id, ("error",), timeout=30)
    assert errored.error_reason, "state is error but errorReason is empty"
    with pytest.raises(DaytonaError):
        errored.process.exec("echo x", timeout=10)
    daytona.delete(errored, timeout=60)
    assert_gone(daytona, sb.id)
    support.assert_no_leaks(sb.id, server.data_dir)


@pytest.mark.crash
def test_sandbox_killed_while_server_down_reports_error_after_restart(private_server):
    srv = private_server
    d = make_client(srv)
    sb = d.create(timeout=120)
    srv.kill9()
    assert support.kill_sandbox_processes(sb.id)
    srv.start()
    d2 = make_client(srv)
    errored = wait_for_state(d2, sb.id, ("error",), timeout=30)
    assert errored.error_reason
    d2.delete(errored, timeout=60)
    support.assert_no_leaks(sb.id, srv.data_dir)


@pytest.mark.crash
def test_kill9_mid_create_leaves_nothing_or_a_deletable_error(private_server):
    srv = private_server
    d = make_client(srv)
    warm = d.create(timeout=120)  # makes sure DIR/sandboxes exists before watching it
    d.delete(warm, timeout=60, wait=True)
    sandboxes_dir = srv.data_dir / "sandboxes"
    assert sandboxes_dir.is_dir(), f"{sandboxes_dir} does not exist after a create"

    watcher = support.DirWatcher(sandboxes_dir)
    outcome: dict = {}

    def create():
        try:
            outcome["sandbox"] = d.create(CreateSandboxFromSnapshotParams(name=f"e2e-crash-{support.short_id()}"), timeout=30)
        except BaseException as exc:  # noqa: BLE001 - the server dies under this call
            outcome["error"] = exc

    t = threading.Thread(target=create, daemon=True)
    t.start()
    try:
        sid = watcher.next_name(30)
        srv.kill9()
    finally:
        watcher.close()
    assert sid, "no sandbox directory appeared within 30 s of the create request"
    t.join(60)

    srv.start()
    d2 = make_client(srv)

    def settled():
        try:
            sb = d2.get(sid)
        except DaytonaNotFoundError:
            return ("gone", None)
        return (state_of(sb), sb) if state_of(sb) in ("error", "started", "stopped") else None

    kind, sb = support.wait_until(settled, 30, 0.25, f"sandbox {sid} to settle after the crash")
    support.PERF_LINES.append(
        f"kill -9 mid-create: sandbox {sid} after restart: {kind}"
        + (f" ({sb.error_reason})" if sb is not None and sb.error_reason else "")
        + f"; the interrupted create call {'returned' if 'sandbox' in outcome else 'raised ' + type(outcome.get('error')).__name__}"
    )
    if kind == "gone":
        support.assert_no_leaks(sid, srv.data_dir, timeout=30)
        return
    if kind == "error":
        assert sb.error_reason, "state error without errorReason"
    if kind == "started":
        assert sh(sb, "echo ok")[1].strip() == "ok", "reported started after the crash but exec fails"
    d2.delete(sb, timeout=60)
    assert_gone(d2, sid)
    support.assert_no_leaks(sid, srv.data_dir)


@pytest.mark.crash
def test_kill9_mid_delete_leaves_nothing_after_restart(private_server):
    srv = private_server
    d = make_client(srv)
    sb = d.create(timeout=120)
    sh(sb, "mkdir -p ~/junk && for i in $(seq 200); do echo $i > ~/junk/$i; done")
    sandbox_dir = srv.data_dir / "sandboxes" / sb.id
    watcher = support.DirWatcher(
        sandbox_dir, support.IN_DELETE | support.IN_MOVED_FROM | support.IN_DELETE_SELF
    )
    outcome: dict = {}

    def delete():
        try:
            d.delete(sb, timeout=30)
            outcome["deleted"] = True
        except BaseException as exc:  # noqa: BLE001 - the server dies under this call
            outcome["error"] = exc

    t = threading.Thread(target=delete, daemon=True)
    t.start()
    try:
        first = watcher.next_name(30)
        srv.kill9()
    finally:
        watcher.close()
    t.join(60)
    assert first is not None, "the delete request removed nothing from the sandbox directory within 30 s"

    srv.start()
    d2 = make_client(srv)

    def settled():
        try:
            got = d2.get(sb.id)
        except DaytonaNotFoundError:
            return ("gone", None)
        return (state_of(got), got) if state_of(got) not in ("destroying", "stopping") else None

    kind, got = support.wait_until(settled, 30, 0.25, f"sandbox {sb.id} to settle after the crash")
    support.PERF_LINES.append(f"kill -9 mid-delete: sandbox {sb.id} after restart: {kind}")
    if kind not in ("gone", "destroyed"):
        d2.delete(got, timeout=60)
        assert_gone(d2, sb.id)
    support.assert_no_leaks(sb.id, srv.data_dir, timeout=30)
