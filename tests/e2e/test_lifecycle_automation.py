"""Lifecycle automation (docs/lifecycle.md): auto-stop, auto-archive, restore, auto-delete,
their reasons, OOM reports, /metrics, and kill -9 in the middle of an archive.

The server runs with SANDBAR_TIME_SCALE=60 (test only): one interval "minute" is one second."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from daytona import CreateSandboxFromSnapshotParams
from prometheus_client.parser import text_string_to_metric_families

import support
from support import make_client, sh, state_of

SCALE = "60"


@pytest.fixture
def fast_server(server_factory, request):
    """A private server whose lifecycle minutes last one second."""
    label = "lc-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    srv = server_factory.new(label, start=False)
    srv.extra_env["SANDBAR_TIME_SCALE"] = SCALE
    srv.start()
    yield srv
    problems = server_factory.shutdown(srv)
    server_factory.servers.remove(srv)
    assert not problems, problems


def raw(srv, sid: str) -> dict:
    with srv.http() as c:
        r = c.get(f"/sandbox/{sid}")
        r.raise_for_status()
        return r.json()


def wait_state(srv, sid: str, want: str, timeout: float) -> dict:
    return support.wait_until(
        lambda: (lambda body: body if body["state"] == want else None)(raw(srv, sid)),
        timeout,
        interval=0.2,
        what=f"sandbox {sid} to be {want}",
    )


def wait_gone(srv, sid: str, timeout: float) -> None:
    def gone():
        with srv.http() as c:
            return c.get(f"/sandbox/{sid}").status_code == 404

    support.wait_until(gone, timeout, interval=0.2, what=f"sandbox {sid} to be deleted")


def sandbox_dir(srv, sid: str) -> Path:
    return srv.data_dir / "sandboxes" / sid


# A Python program run inside the sandbox: one line per path under the roots, with type, mode,
# owner, and content hash / link target / device number. Missing roots are reported as such.
TREE_SCRIPT = r"""
import hashlib, json, os, stat, sys
out = {}
for root in sys.argv[1:]:
    if not os.path.lexists(root):
        out[root] = "missing"
        continue
    for dirpath, dirs, files in os.walk(root):
        for name in [dirpath] + [os.path.join(dirpath, f) for f in files] + [os.path.join(dirpath, d) for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(name)
            if stat.S_ISREG(st.st_mode):
                with open(name, "rb") as f:
                    what = "file:" + hashlib.sha256(f.read()).hexdigest() + ":links=%d" % st.st_nlink
            elif stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(name)
            elif stat.S_ISDIR(st.st_mode):
                what = "dir:" + ",".join(sorted(os.listdir(name)))
            elif stat.S_ISFIFO(st.st_mode):
                what = "fifo"
            else:
                what = "other:%d" % st.st_rdev
            out[name] = "%s mode=%o uid=%d gid=%d" % (what, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
print(json.dumps(out, sort_keys=True))
"""

ROOTS = ["/home/daytona/t", "/opt/t", "/usr/share/sandbar-gone", "/usr/share/sandbar-opaque",
         "/etc/sandbar-deleted", "/usr/share/doc", "/usr/bin/yes", "/etc/debian_version"]

MAKE_TREE = """
set -e
mkdir -p /home/daytona/t/empty /home/daytona/t/sub /opt/t
echo hello > /home/daytona/t/file
head -c 100000 /dev/urandom > /home/daytona/t/sub/random.bin
chmod 4750 /home/daytona/t/file
chown 1234:5678 /home/daytona/t/sub/random.bin
chmod 0600 /home/daytona/t/sub/random.bin
ln -s ../file /home/daytona/t/sub/link
ln /home/daytona/t/file /home/daytona/t/hard
mkfifo /home/daytona/t/fifo
chown 1000:1000 /home/daytona/t/empty
echo opt > /opt/t/x
# whiteouts of lower files: one in the root layer, one in the /usr overlay
mkdir -p /usr/share/sandbar-gone && echo lower > /usr/share/sandbar-gone/f
mkdir -p /usr/share/sandbar-opaque/old
echo x > /etc/sandbar-deleted
"""


def tree(sb) -> dict:
    code, out = sh(sb, support.python_cmd(TREE_SCRIPT) + " " + " ".join(ROOTS), timeout=60)
    assert code == 0, out
    return support.last_json_line(out)


@pytest.mark.lifecycle
def test_idle_sandbox_stops_and_sdk_polling_does_not_keep_it_alive(fast_server):
    d = make_client(fast_server)
    sb = d.create(CreateSandboxFromSnapshotParams(auto_stop_interval=3), timeout=60)
    # GETs like the SDK's wait loop do not count as activity.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = raw(fast_server, sb.id)
        if body["state"] == "stopped":
            break
        time.sleep(0.5)
    assert body["state"] == "stopped", body
    assert body["stateReason"].startswith("auto-stop"), body
    assert "stateChangedAt" in body
    # A user's start clears the reason and does not stop at once (the start is activity).
    sb.start(timeout=60)
    body = raw(fast_server, sb.id)
    assert body["state"] == "started" and "stateReason" not in body, body
    d.delete(sb)


@pytest.mark.lifecycle
def test_busy_sandboxes_are_not_stopped(fast_server):
    d = make_client(fast_server)
    sb = d.create(CreateSandboxFromSnapshotParams(auto_stop_interval=2), timeout=60)
    # A long command in flight (longer than the idle interval) keeps it started.
    code, _ = sh(sb, "sleep 5", timeout=30)
    assert code == 0
    assert raw(fast_server, sb.id)["state"] == "started"
    # A session command still running counts too (default `sandbar.io/activity`).
    sb.process.create_session("busy")
    from daytona import SessionExecuteRequest

    sb.process.execute_session_command("busy", SessionExecuteRequest(command="sleep 6", run_async=True))
    time.sleep(5)
    assert raw(fast_server, sb.id)["state"] == "started"
    # Without `process` in the label, only requests count: it stops.
    sb.set_labels({"sandbar.io/activity": "connections"})
    sb.process.execute_session_command("busy", SessionExecuteRequest(command="sleep 30", run_async=True))
    body = wait_state(fast_server, sb.id, "stopped", 20)
    assert body["stateReason"].startswith("auto-stop")
    d.delete(sb)


@pytest.mark.lifecycle
def test_archive_round_trip_keeps_every_file_mode_and_owner(fast_server):
    d = make_client(fast_server)
    sb = d.create(CreateSandboxFromSnapshotParams(os_user="root", auto_stop_interval=0, auto_archive_interval=0), timeout=60)
    code, out = sh(sb, MAKE_TREE)
    assert code == 0, out
    # Delete files of the image (whiteouts: character devices 0/0 in the layer) and replace a
    # directory of the image (an opaque directory: `trusted.overlay.opaque`).
    code, out = sh(sb, "rm -f /usr/bin/yes /etc/debian_version; rm -rf /usr/share/sandbar-gone; "
                       "rm -rf /usr/share/doc && mkdir /usr/share/doc && echo new > /usr/share/doc/only")
    assert code == 0, out
    before = tree(sb)
    gone = sh(sb, "ls /usr/bin/yes /etc/debian_version; ls /usr/share/doc")[1]
    sb.stop(timeout=60)
    sb.archive()
    body = wait_state(fast_server, sb.id, "archived", 60)
    assert "stateReason" not in body, "a requested archive has no reason"
    sdir = sandbox_dir(fast_server, sb.id)
    assert (sdir / "layer.tar.zst").is_file()
    assert not (sdir / "upper").exists() and not (sdir / "upper-usr").exists(), list(sdir.iterdir())
    sb.start(timeout=120)
    assert tree(sb) == before
    assert sh(sb, "ls /usr/bin/yes /etc/debian_version; ls /usr/share/doc")[1] == gone
    assert not (sdir / "layer.tar.zst").exists()
    d.delete(sb)


@pytest.mark.lifecycle
def test_auto_archive_restore_and_auto_delete(fast_server):
    d = make_client(fast_server)
    sb = d.create(
        CreateSandboxFromSnapshotParams(auto_stop_interval=0, auto_archive_interval=2, auto_delete_interval=-1),
        timeout=60,
    )
    assert sh(sb, "echo kept > /home/daytona/kept")[0] == 0
    sb.stop(timeout=60)
    body = wait_state(fast_server, sb.id, "archived", 30)
    assert body["stateReason"].startswith("auto-archive"), body
    assert (sandbox_dir(fast_server, sb.id) / "layer.tar.zst").is_file()
    # Archived stays archived (no delete), and a start restores transparently.
    time.sleep(3)
    assert raw(fast_server, sb.id)["state"] == "archived"
    sb.start(timeout=120)
    assert sh(sb, "cat /home/daytona/kept")[1].strip() == "kept"
    # Auto-delete 2 "minutes" after the stop.
    sb.set_auto_delete_interval(2)
    sb.stop(timeout=60)
    wait_gone(fast_server, sb.id, 30)
    support.assert_no_leaks(sb.id, fast_server.data_dir)
    # Ephemeral (0): deleted on stop.
    eph = d.create(CreateSandboxFromSnapshotParams(auto_delete_interval=0, auto_stop_interval=1), timeout=60)
    wait_gone(fast_server, eph.id, 30)


@pytest.mark.lifecycle
def test_oom_killed_command_is_reported(fast_server):
    d = make_client(fast_server)
    sb = d.create(CreateSandboxFromSnapshotParams(auto_stop_interval=0), timeout=60)
    with httpx.Client(base_url=f"{fast_server.base_url}/toolbox/{sb.id}",
                      headers={"Authorization": f"Bearer {fast_server.api_key}"}, timeout=120) as c:
        hog = support.python_cmd("x = b'x' * (3 * 1024 ** 3); print(len(x))")
        r = c.post("/process/execute", json={"command": hog, "timeout": 100})
        r.raise_for_status()
        body = r.json()
        assert body["exitCode"] == 137, body
        assert body.get("oomKilled") is True, body
        assert "out of memory" in body["result"], body
        ok = c.post("/process/execute", json={"command": "echo fine"}).json()
        assert ok == {"exitCode": 0, "result": "fine\n"} or (ok["exitCode"] == 0 and "oomKilled" not in ok), ok
    # The SDK keeps working with the extra field.
    r = sb.process.exec("echo sdk")
    assert r.exit_code == 0
    d.delete(sb)


@pytest.mark.lifecycle
def test_metrics_are_valid_prometheus_text(fast_server):
    d = make_client(fast_server)
    sb = d.create(CreateSandboxFromSnapshotParams(auto_stop_interval=0), timeout=60)
    sh(sb, "echo hi")
    sb.fs.upload_file(b"data", "/tmp/x")
    with httpx.Client(timeout=30) as c:
        assert c.get(f"{fast_server.base_url}/metrics").status_code == 401
        r = c.get(f"{fast_server.base_url}/metrics", headers={"Authorization": f"Bearer {fast_server.api_key}"})
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    states = {s.labels["state"]: s.value for s in families["sandbar_sandboxes"].samples}
    assert states["started"] >= 1
    ops = {(s.labels.get("operation"), s.labels.get("outcome")) for s in families["sandbar_operation_duration_seconds"].samples}
    for op in ("create", "exec", "file_upload"):
        assert (op, "success") in ops, ops
    mem = [s for s in families["sandbar_sandbox_memory_bytes"].samples if s.labels["sandbox"] == sb.id]
    assert mem and mem[0].value > 0
    disk = [s for s in families["sandbar_sandbox_disk_bytes"].samples if s.labels["sandbox"] == sb.id]
    assert disk and disk[0].value > 0
    assert any(s.labels["sandbox"] == sb.id for s in families["sandbar_sandbox_cpu_seconds"].samples)
    d.delete(sb)


@pytest.mark.crash
def test_kill9_during_archive_leaves_layer_or_complete_archive(fast_server):
    d = make_client(fast_server)
    sb = d.create(CreateSandboxFromSnapshotParams(auto_stop_interval=0), timeout=60)
    code, out = sh(sb, "head -c 150000000 /dev/urandom > /home/daytona/big && sha256sum /home/daytona/big", timeout=120)
    assert code == 0, out
    digest = out.split()[0]
    sb.stop(timeout=60)
    sdir = sandbox_dir(fast_server, sb.id)
    watcher = support.DirWatcher(sdir)
    done = threading.Event()

    def archive():
        try:
            with fast_server.http() as c:
                c.post(f"/sandbox/{sb.id}/archive", timeout=120)
        except httpx.HTTPError:
            pass
        done.set()

    threading.Thread(target=archive, daemon=True).start()
    try:
        while True:
            name = watcher.next_name(30)
            assert name is not None, "the archive never started"
            if name == "layer.tar.zst.tmp":
                break
    finally:
        watcher.close()
    time.sleep(0.3)  # mid-write
    fast_server.kill9()
    done.wait(10)
    fast_server.start()
    body = raw(fast_server, sb.id)
    assert body["state"] in ("stopped", "archived"), body
    support.PERF_LINES.append(f"kill -9 during archive: recovered as {body['state']} ({body.get('stateReason')})")
    assert not (sdir / "layer.tar.zst.tmp").exists()
    if body["state"] == "stopped":
        assert (sdir / "upper").is_dir()
        assert "interrupted" in body["stateReason"], body
    else:
        assert (sdir / "layer.tar.zst").is_file()
    d = make_client(fast_server)
    sb = d.get(sb.id)
    sb.start(timeout=120)
    assert sh(sb, "sha256sum /home/daytona/big", timeout=60)[1].split()[0] == digest
    d.delete(sb)
