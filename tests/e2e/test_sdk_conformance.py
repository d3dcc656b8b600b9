"""Daytona SDK conformance: the real `daytona==0.226.1` (sync and async clients) and
`@daytonaio/sdk` (node) against a real `sandbar serve`, through every SDK method Sandbar
supports (docs/compatibility.md lists them). Each test asserts results and the exact error
classes the SDK raises; raw HTTP checks cover the contract's §0 rules (percent-encoded path
segments, repeated query keys, double slashes, JSON without a Content-Type)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import httpx_ws
import pytest
from daytona import (
    AsyncDaytona,
    CodeRunParams,
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    DaytonaAuthenticationError,
    DaytonaConfig,
    DaytonaConflictError,
    DaytonaError,
    DaytonaFileNotFoundError,
    DaytonaNotFoundError,
    DaytonaTimeoutError,
    DaytonaValidationError,
    FileDownloadRequest,
    FileUpload,
    ListSandboxesQuery,
    PtySize,
    Resources,
    SessionExecuteRequest,
    VolumeMount,
)

import support
from support import make_client, sh, state_of

RUN = support.short_id()
TS_DIR = Path(__file__).resolve().parent / "ts"

pytestmark = pytest.mark.timeout(300)


def value(x) -> str:
    return str(getattr(x, "value", x))


def api(server, method: str, path: str, key: str | None = None, **kw) -> httpx.Response:
    """A raw HTTP call to the server (no SDK), `path` taken verbatim (it may hold `%2F`, `//`)."""
    headers = kw.pop("headers", {})
    headers.setdefault("Authorization", f"Bearer {key or server.api_key}")
    base = server.api_url.rsplit("/api", 1)[0]
    with httpx.Client(timeout=30) as c:
        req = c.build_request(method, base, headers=headers, **kw)
        req.url = req.url.copy_with(raw_path=path.encode())
        return c.send(req)


def local(url: str) -> tuple[str, dict]:
    """`url` rewritten to 127.0.0.1 with the original Host header (`*.localhost` preview hosts)."""
    u = httpx.URL(url)
    host = u.host if u.port is None else f"{u.host}:{u.port}"
    return str(u.copy_with(host="127.0.0.1")), {"Host": host}


def wait_port(sb, port: int):
    probe = support.python_cmd(
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
    )
    support.wait_until(lambda: sh(sb, probe)[0] == 0, 20, 0.3, f"port {port} to listen in the sandbox")


@pytest.fixture(scope="module")
def sb(module_sandboxes):
    return module_sandboxes(
        CreateSandboxFromSnapshotParams(
            name=f"conf-{RUN}",
            labels={"suite": "conformance", "run": RUN},
            env_vars={"CONF": "yes"},
            auto_stop_interval=0,
        )
    )


# ---------------------------------------------------------------------------------------------
# Create variants, get, list
# ---------------------------------------------------------------------------------------------


@pytest.mark.seed
def test_create_variants(daytona, create_sandbox):
    default = create_sandbox()
    assert state_of(default) == "started" and default.snapshot
    snaps = daytona.snapshot.list()
    assert snaps.total >= 1 and default.snapshot in [s.name for s in snaps.items]
    assert daytona.snapshot.get(default.snapshot).name == default.snapshot
    with pytest.raises(DaytonaNotFoundError):
        daytona.snapshot.get(f"no-such-snapshot-{RUN}")

    sb = create_sandbox(
        CreateSandboxFromSnapshotParams(
            snapshot=default.snapshot,
            name=f"variants-{RUN}",
            env_vars={"A": "1"},
            labels={"k": "v", "run": RUN},
            public=True,
            network_block_all=True,
            auto_stop_interval=5,
            auto_archive_interval=60,
            auto_delete_interval=120,
        )
    )
    assert (sb.name, sb.public, sb.network_block_all) == (f"variants-{RUN}", True, True)
    assert (sb.auto_stop_interval, sb.auto_archive_interval, sb.auto_delete_interval) == (5, 60, 120)
    assert sb.labels["k"] == "v" and sb.env["A"] == "1"
    assert sh(sb, "echo $A")[1].strip() == "1"
    # network_block_all: only loopback inside.
    code, out = sh(sb, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
    assert out.split() == ["lo"], out

    eph = create_sandbox(CreateSandboxFromSnapshotParams(ephemeral=True, language="typescript"))
    assert eph.auto_delete_interval == 0
    assert eph.labels["code-toolbox-language"] == "typescript"

    with pytest.raises(DaytonaConflictError):
        daytona.create(CreateSandboxFromSnapshotParams(name=f"variants-{RUN}"), timeout=60)
    with pytest.raises(DaytonaNotFoundError):
        daytona.create(CreateSandboxFromSnapshotParams(snapshot=f"nope-{RUN}"), timeout=60)
    # Image builds are not offered: a clear 400, not a hang.
    with pytest.raises(DaytonaValidationError):
        daytona.create(
            CreateSandboxFromImageParams(image=f"example.invalid/nope:{RUN}", resources=Resources(cpu=2, memory=2)),
            timeout=60,
        )


@pytest.mark.seed
def test_get_list_filters_and_pagination(server, daytona, sb, create_sandbox):
    assert daytona.get(sb.id).id == sb.id
    assert daytona.get(sb.name).id == sb.id
    with pytest.raises(DaytonaNotFoundError) as ei:
        daytona.get(f"missing-{RUN}")
    assert ei.value.status_code == 404
    others = [create_sandbox(CreateSandboxFromSnapshotParams(labels={"suite": "conformance", "run": RUN})) for _ in range(2)]
    want = {sb.id, *(o.id for o in others)}
    got = [s.id for s in daytona.list(ListSandboxesQuery(labels={"run": RUN, "suite": "conformance"}, limit=1))]
    assert sorted(got) == sorted(want)
    assert [s.id for s in daytona.list(ListSandboxesQuery(labels={"run": RUN}, name=f"conf-{RUN}"))] == [sb.id]
    others[0].stop()
    stopped = [s.id for s in daytona.list(ListSandboxesQuery(labels={"run": RUN}, states=["stopped"]))]
    assert stopped == [others[0].id]
    # Sorting (raw HTTP: the SDK passes it through).
    labels = json.dumps({"run": RUN, "suite": "conformance"})
    r = api(server, "GET", f"/api/sandbox?labels={httpx.QueryParams({'l': labels})['l']}&sort=name&order=desc")
    names = [i["name"] for i in r.json()["items"]]
    assert names == sorted(names, reverse=True)


# ---------------------------------------------------------------------------------------------
# Lifecycle, labels, intervals, activity
# ---------------------------------------------------------------------------------------------


@pytest.mark.lifecycle
def test_stop_start_archive_recover_delete(daytona, create_sandbox):
    sb = create_sandbox()
    sh(sb, "echo kept > ~/k.txt")
    sb.stop()
    assert state_of(sb) == "stopped"
    sb.archive()
    sb.refresh_data()
    assert state_of(sb) == "archived"
    sb.start()
    assert state_of(sb) == "started" and sh(sb, "cat ~/k.txt")[1].strip() == "kept"
    daytona.stop(sb)
    sb.recover()
    assert state_of(sb) == "started"
    sb.delete(wait=True)
    with pytest.raises(DaytonaNotFoundError):
        daytona.get(sb.id)


@pytest.mark.seed
def test_labels_intervals_public_network_activity(daytona, sb):
    labels = {"suite": "conformance", "run": RUN, "x": "y"}
    assert sb.set_labels(labels) == labels
    sb.set_autostop_interval(30)
    sb.set_auto_archive_interval(120)
    sb.set_auto_delete_interval(-1)
    sb.set_public(True)
    got = daytona.get(sb.id)
    assert (got.auto_stop_interval, got.auto_archive_interval, got.auto_delete_interval, got.public) == (30, 120, -1, True)
    sb.set_public(False)
    sb.set_autostop_interval(0)
    sb.update_network_settings(network_allow_list="10.0.0.0/8")
    assert daytona.get(sb.id).network_allow_list == "10.0.0.0/8"
    before = daytona.get(sb.id).last_activity_at
    time.sleep(1.1)
    sb.refresh_activity()
    assert daytona.get(sb.id).last_activity_at > before


@pytest.mark.seed
def test_env_and_dirs(sb):
    assert sb.get_user_home_dir() == "/home/daytona"
    assert sb.get_work_dir() == "/home/daytona"
    sb.update_env({"NEW_VAR": "n1"})
    assert sh(sb, "echo $NEW_VAR $CONF")[1].split() == ["n1", "yes"]
    sb.update_env({}, unset=["NEW_VAR"])
    assert sh(sb, "echo ${NEW_VAR:-unset}")[1].strip() == "unset"


# ---------------------------------------------------------------------------------------------
# Preview links: HTTP and WebSocket through the built-in proxy
# ---------------------------------------------------------------------------------------------

WS_ECHO = r"""
import base64, hashlib, socket, struct, threading
def serve(c):
    data = b''
    while b'\r\n\r\n' not in data:
        data += c.recv(4096)
    key = [l.split(b':', 1)[1].strip() for l in data.split(b'\r\n') if l.lower().startswith(b'sec-websocket-key')][0]
    accept = base64.b64encode(hashlib.sha1(key + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest())
    c.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + b'\r\n\r\n')
    buf = b''
    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = c.recv(65536)
            if not d:
                raise EOFError
            buf += d
        r, buf = buf[:n], buf[n:]
        return r
    while True:
        h = need(2); op = h[0] & 15; n = h[1] & 127
        if n == 126: n = struct.unpack('>H', need(2))[0]
        elif n == 127: n = struct.unpack('>Q', need(8))[0]
        mask = need(4) if h[1] & 128 else b'\0\0\0\0'
        p = bytes(b ^ mask[i % 4] for i, b in enumerate(need(n)))
        if op == 8:
            c.sendall(b'\x88\x00'); break
        if op == 9: op = 10
        reply = b'echo:' + p if op == 1 else p
        size = bytes([len(reply)]) if len(reply) < 126 else b'\x7e' + struct.pack('>H', len(reply))
        c.sendall(bytes([0x80 | op]) + size + reply)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 8765)); s.listen()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture(scope="module")
def web_sb(module_sandboxes):
    sb = module_sandboxes(CreateSandboxFromSnapshotParams(labels={"run": RUN, "role": "web"}))
    sh(sb, f"mkdir -p ~/site && echo preview-{RUN} > ~/site/index.html")
    sh(sb, "cd ~/site && nohup python3 -m http.server 8080 > /tmp/http.log 2>&1 &")
    sb.fs.upload_file(WS_ECHO.encode(), "/tmp/ws_echo.py")
    sh(sb, "nohup python3 /tmp/ws_echo.py > /tmp/ws.log 2>&1 &")
    wait_port(sb, 8080)
    wait_port(sb, 8765)
    return sb


@pytest.mark.preview
def test_preview_http_credentials(server, web_sb):
    p = web_sb.get_preview_link(8080)
    assert p.sandbox_id == web_sb.id and p.token
    url, host = local(p.url)
    ok = httpx.get(url, headers={**host, "X-Daytona-Preview-Token": p.token}, timeout=15)
    assert ok.status_code == 200 and f"preview-{RUN}" in ok.text
    by_key = httpx.get(url, headers={**host, "Authorization": f"Bearer {server.api_key}"}, timeout=15)
    assert by_key.status_code == 200
    by_query = httpx.get(url, params={"DAYTONA_SANDBOX_AUTH_KEY": p.token}, headers=host, timeout=15)
    assert by_query.status_code == 200
    denied = httpx.get(url, headers=host, timeout=15)
    assert denied.status_code == 401 and denied.json()["statusCode"] == 401
    wrong = httpx.get(url, headers={**host, "X-Daytona-Preview-Token": "wrong"}, timeout=15)
    assert wrong.status_code == 401
    # A closed port is a 502 envelope, not a hang.
    closed, chost = local(web_sb.get_preview_link(8099).url)
    r = httpx.get(closed, headers={**chost, "X-Daytona-Preview-Token": p.token}, timeout=15)
    assert r.status_code == 502 and r.json()["source"] == "DAYTONA_PROXY"


@pytest.mark.preview
def test_preview_public_and_signed(web_sb):
    url, host = local(web_sb.get_preview_link(8080).url)
    web_sb.set_public(True)
    try:
        assert httpx.get(url, headers=host, timeout=15).status_code == 200
    finally:
        web_sb.set_public(False)
    assert httpx.get(url, headers=host, timeout=15).status_code == 401
    signed = web_sb.create_signed_preview_url(8080, expires_in_seconds=120)
    assert signed.port == 8080 and signed.token in signed.url
    surl, shost = local(signed.url)
    r = httpx.get(surl, headers=shost, timeout=15)
    assert r.status_code == 200 and f"preview-{RUN}" in r.text
    web_sb.expire_signed_preview_url(8080, signed.token)
    assert httpx.get(surl, headers=shost, timeout=15).status_code == 401
    short = web_sb.create_signed_preview_url(8080, expires_in_seconds=1)
    time.sleep(1.5)
    s2, h2 = local(short.url)
    assert httpx.get(s2, headers=h2, timeout=15).status_code == 401


@pytest.mark.preview
def test_preview_websocket_echo(web_sb):
    p = web_sb.get_preview_link(8765)
    url, host = local(p.url)
    ws_url = url.replace("http://", "ws://", 1)
    with httpx.Client(timeout=15) as client:
        with httpx_ws.connect_ws(ws_url, client, headers={**host, "X-Daytona-Preview-Token": p.token}) as ws:
            ws.send_text("hello")
            assert ws.receive_text(timeout=10) == "echo:hello"
            ws.send_bytes(b"\x00\x01binary")
            assert ws.receive_bytes(timeout=10) == b"\x00\x01binary"


@pytest.mark.preview
def test_tunnel_is_not_reachable_through_the_toolbox(server, web_sb):
    for path in ("/sandbar/tunnel/8080", "//sandbar/tunnel/8080", "/%73andbar/tunnel/8080"):
        r = api(server, "GET", f"/toolbox/{web_sb.id}{path}", headers={"Connection": "upgrade", "Upgrade": "sandbar-tunnel"})
        assert r.status_code == 404, (path, r.status_code, r.text[:200])


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@pytest.mark.files
def test_fs_methods(sb):
    fs = sb.fs
    base = f"/tmp/fs-{RUN}"
    fs.create_folder(base, "755")
    fs.upload_file(b"alpha needle\nbeta\n", f"{base}/a.txt")
    fs.upload_files([FileUpload(b"one", f"{base}/d/1.txt"), FileUpload(os.urandom(4096), f"{base}/d/2.bin")])
    names = {f.name: f for f in fs.list_files(base)}
    assert set(names) == {"a.txt", "d"} and names["d"].is_dir and names["a.txt"].size == 18
    info = fs.get_file_info(f"{base}/a.txt")
    assert info.name == "a.txt" and not info.is_dir and info.permissions == "0644" and info.owner
    fs.set_file_permissions(f"{base}/a.txt", mode="600")
    assert fs.get_file_info(f"{base}/a.txt").permissions == "0600"
    fs.set_file_permissions(f"{base}/a.txt", owner="root", group="root")
    assert sh(sb, f"stat -c '%U:%G' {base}/a.txt")[1].strip() in ("root:root", "daytona:daytona")
    hits = fs.find_files(base, "needle")
    assert [(h.file.endswith("a.txt"), h.line) for h in hits] == [(True, 1)]
    assert sorted(Path(p).name for p in fs.search_files(base, "*.txt").files) == ["1.txt", "a.txt"]
    res = fs.replace_in_files([f"{base}/a.txt", f"{base}/missing.txt"], "needle", "pin")
    by_file = {Path(r.file).name: r for r in res}
    assert by_file["a.txt"].success and not by_file["missing.txt"].success
    assert fs.download_file(f"{base}/a.txt") == b"alpha pin\nbeta\n"
    fs.move_files(f"{base}/a.txt", f"{base}/b.txt")
    with pytest.raises(DaytonaFileNotFoundError):
        fs.download_file(f"{base}/a.txt")
    with pytest.raises(DaytonaNotFoundError):
        fs.get_file_info(f"{base}/a.txt")
    out = fs.download_files([FileDownloadRequest(f"{base}/b.txt"), FileDownloadRequest(f"{base}/nope")])
    assert out[0].result == b"alpha pin\nbeta\n" and not out[0].error
    assert out[1].error and out[1].result is None
    fs.delete_file(f"{base}/d", recursive=True)
    with pytest.raises(DaytonaError):
        fs.delete_file(f"{base}/nothing-here")
    fs.delete_file(base, recursive=True)
    assert sh(sb, f"test -e {base}; echo $?")[1].strip() == "1"


# ---------------------------------------------------------------------------------------------
# Process: exec, code_run, sessions, PTY
# ---------------------------------------------------------------------------------------------


@pytest.mark.sessions
def test_exec_and_code_run(sb):
    r = sb.process.exec("echo out; echo err >&2; exit 4")
    assert r.exit_code == 4 and "out" in r.result and "err" in r.result
    assert sb.process.exec("pwd", cwd="/tmp").result.strip() == "/tmp"
    assert sb.process.exec("echo $Q", env={"Q": "z"}).result.strip() == "z"
    with pytest.raises(DaytonaTimeoutError):
        sb.process.exec("sleep 20", timeout=1)
    r = sb.process.code_run("import sys; print('py', sys.argv[1:])", params=CodeRunParams(argv=["a1"]))
    assert r.exit_code == 0 and "py ['a1']" in r.result and r.artifacts.stdout == r.result
    r = sb.process.code_run("raise SystemExit(3)")
    assert r.exit_code == 3


@pytest.mark.sessions
def test_sessions_and_streamed_logs(sb):
    p = sb.process
    sid = f"sess-{RUN}"
    p.create_session(sid)
    with pytest.raises(DaytonaConflictError):
        p.create_session(sid)
    try:
        assert p.execute_session_command(sid, SessionExecuteRequest(command="cd /tmp && X=5")).exit_code == 0
        r = p.execute_session_command(sid, SessionExecuteRequest(command="echo $X $(pwd)"))
        assert r.stdout.strip() == "5 /tmp"
        r = p.execute_session_command(
            sid,
            SessionExecuteRequest(command="for i in 1 2 3; do echo o$i; echo e$i >&2; sleep 0.3; done", run_async=True),
        )
        out: list[str] = []
        err: list[str] = []
        asyncio.run(p.get_session_command_logs_async(sid, r.cmd_id, out.append, err.append))
        assert "".join(out).split() == ["o1", "o2", "o3"] and "".join(err).split() == ["e1", "e2", "e3"]
        assert p.get_session_command(sid, r.cmd_id).exit_code == 0
        logs = p.get_session_command_logs(sid, r.cmd_id)
        assert "o3" in logs.stdout and "e3" in logs.stderr
        assert [c.command for c in p.get_session(sid).commands][0] == "cd /tmp && X=5"
        assert sid in [s.session_id for s in p.list_sessions()]
    finally:
        p.delete_session(sid)
    with pytest.raises(DaytonaNotFoundError):
        p.get_session(sid)


@pytest.mark.sessions
def test_pty(sb):
    p = sb.process
    pid = f"pty-{RUN}"
    h = p.create_pty_session(pid, cwd="/tmp", envs={"PTYV": "pv"}, pty_size=PtySize(cols=100, rows=30))
    chunks: list[bytes] = []
    try:
        h.wait_for_connection(timeout=10)
        info = p.get_pty_session_info(pid)
        assert info.active and (info.cols, info.rows) == (100, 30)
        assert pid in [s.id for s in p.list_pty_sessions()]
        h.send_input("echo marker-$PTYV-$(pwd); stty size\n")
        resized = h.resize(PtySize(cols=120, rows=40))
        assert (resized.cols, resized.rows) == (120, 40)
        h.send_input("stty size; exit 7\n")
        result = h.wait(on_data=chunks.append, timeout=20)
        text = b"".join(chunks).decode(errors="replace")
        assert "marker-pv-/tmp" in text and "40 120" in text, text
        assert result.exit_code == 7
    finally:
        try:
            p.kill_pty_session(pid)
        except DaytonaError:
            pass
    killme = f"pty-kill-{RUN}"
    h2 = p.create_pty_session(killme)
    h2.wait_for_connection(timeout=10)
    h2.kill()
    support.wait_until(lambda: killme not in [s.id for s in p.list_pty_sessions() if s.active], 10, 0.2, "PTY kill")


# ---------------------------------------------------------------------------------------------
# Git
# ---------------------------------------------------------------------------------------------


@pytest.mark.files
def test_git(sb):
    g = sb.git
    repo = f"/tmp/repo-{RUN}"
    g.init(repo, initial_branch="main")
    sb.fs.upload_file(b"hello\n", f"{repo}/README.md")
    st = g.status(repo)
    assert st.current_branch == "main"
    assert [(f.name, value(f.worktree)) for f in st.file_status] == [("README.md", "Untracked")]
    g.add(repo, ["README.md"])
    assert value(g.status(repo).file_status[0].staging) == "Added"
    c = g.commit(repo, "first", "Conf Tester", "conf@example.com")
    assert len(c.sha) >= 7
    g.create_branch(repo, "feature")
    assert sorted(g.branches(repo).branches) == ["feature", "main"]
    g.checkout_branch(repo, "feature")
    assert g.status(repo).current_branch == "feature"
    with pytest.raises(DaytonaNotFoundError):
        g.checkout_branch(repo, "no-such-branch")
    with pytest.raises(DaytonaConflictError):
        g.create_branch(repo, "main")
    g.checkout_branch(repo, "main")
    g.delete_branch(repo, "feature")
    assert g.branches(repo).branches == ["main"]
    with pytest.raises(DaytonaNotFoundError):
        g.status(f"/tmp/not-a-repo-{RUN}")
    # Clone from a local bare repository inside the sandbox.
    bare = f"/tmp/bare-{RUN}.git"
    assert sh(sb, f"git clone -q --bare {repo} {bare}")[0] == 0
    g.clone(bare, f"/tmp/clone-{RUN}")
    assert sb.fs.download_file(f"/tmp/clone-{RUN}/README.md") == b"hello\n"
    with pytest.raises(DaytonaError):
        g.clone(f"/tmp/no-such-repo-{RUN}", f"/tmp/clone2-{RUN}")


# ---------------------------------------------------------------------------------------------
# Not offered: clear envelope errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.seed
def test_lsp_and_computer_use_fail_clearly(sb):
    with pytest.raises(DaytonaError) as ei:
        sb.create_lsp_server("python", "/tmp").start()
    assert ei.value.status_code in (400, 501)
    with pytest.raises(DaytonaError) as ei:
        sb.computer_use.start()
    assert ei.value.status_code == 501


# ---------------------------------------------------------------------------------------------
# Errors and HTTP edge cases (contract §0 and §8)
# ---------------------------------------------------------------------------------------------


@pytest.mark.seed
def test_error_classes_and_envelope(server, sb):
    bad = make_client(server, key="sb_not_a_key")
    with pytest.raises(DaytonaAuthenticationError) as ei:
        bad.get(sb.id)
    assert ei.value.status_code == 401
    r = api(server, "GET", "/api/sandbox/does-not-exist")
    body = r.json()
    assert r.status_code == 404 and body["statusCode"] == 404 and body["error"] == "Not Found"
    assert body["path"] == "/api/sandbox/does-not-exist" and "does-not-exist" in body["message"]
    assert body["source"] == "DAYTONA_API"


@pytest.mark.seed
def test_http_edge_cases(server, sb):
    snap = sb.snapshot
    encoded = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in snap)
    r = api(server, "GET", f"/api/snapshots/{encoded}")
    assert r.status_code == 200 and r.json()["name"] == snap
    r = api(server, "GET", "/api/snapshots/a%2Fb%3Ac")
    assert r.status_code == 404 and "a/b:c" in r.json()["message"]
    r = api(server, "GET", f"/api//sandbox/{sb.id}")
    assert r.status_code == 200 and r.json()["id"] == sb.id
    r = api(server, "GET", f"/api/sandbox?states=started&states=stopped&labels=%7B%22run%22%3A%20%22{RUN}%22%7D")
    assert sb.id in [i["id"] for i in r.json()["items"]]
    r = api(server, "GET", "/api/sandbox?states=started&states=bogus")
    assert r.status_code == 400
    r = api(server, "PUT", f"/api/sandbox/{sb.id}/labels", content=json.dumps({"labels": {"run": RUN, "suite": "conformance"}}))
    assert r.status_code == 200 and r.json()["labels"]["run"] == RUN
    r = api(server, "POST", f"/toolbox/{sb.id}/env", content=json.dumps({"set": {"RAW": "1"}}))
    assert r.status_code == 200 and r.json()["RAW"] == "1"
    r = api(server, "POST", "/api/sandbox", content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST_BODY"


@pytest.mark.seed
def test_openapi_document_is_served_and_committed(server):
    r = httpx.get(server.api_url + "/openapi.json", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    committed = json.loads((support.REPO / "docs" / "openapi.json").read_text())
    assert doc == committed
    for path in ("/api/sandbox/{id}/ports/{port}/preview-url", "/api/sandbox/{id}/ports/{port}/signed-preview-url"):
        assert path in doc["paths"]


# ---------------------------------------------------------------------------------------------
# Async client
# ---------------------------------------------------------------------------------------------


@pytest.mark.async_sdk
def test_async_client_flow(server):
    async def flow():
        async with AsyncDaytona(DaytonaConfig(api_key=server.api_key, api_url=server.api_url)) as d:
            sb = await d.create(CreateSandboxFromSnapshotParams(labels={"run": RUN, "async": "1"}, env_vars={"E": "a"}), timeout=120)
            try:
                assert state_of(sb) == "started"
                assert (await d.get(sb.id)).id == sb.id
                r = await sb.process.exec("echo $E")
                assert r.result.strip() == "a"
                await sb.fs.upload_file(b"async", "/tmp/a.txt")
                assert await sb.fs.download_file("/tmp/a.txt") == b"async"
                with pytest.raises(DaytonaFileNotFoundError):
                    await sb.fs.download_file("/tmp/none.txt")
                await sb.process.create_session("as")
                c = await sb.process.execute_session_command("as", SessionExecuteRequest(command="echo x; echo y >&2", run_async=True))
                out, err = [], []
                await sb.process.get_session_command_logs_async("as", c.cmd_id, out.append, err.append)
                assert "".join(out).strip() == "x" and "".join(err).strip() == "y"
                p = await sb.get_preview_link(8080)
                assert p.sandbox_id == sb.id and p.token
                await sb.set_labels({"run": RUN, "async": "2"})
                found = [s.id async for s in d.list(ListSandboxesQuery(labels={"async": "2"}))] if hasattr(d.list(ListSandboxesQuery()), "__aiter__") else None
                if found is not None:
                    assert sb.id in found
                await sb.stop()
                assert state_of(sb) == "stopped"
                await sb.start()
                assert state_of(sb) == "started"
                with pytest.raises(DaytonaNotFoundError):
                    await d.get(f"missing-{RUN}")
            finally:
                await d.delete(sb, wait=True)

    asyncio.run(flow())


# ---------------------------------------------------------------------------------------------
# The seed workflow of an agent backend
# ---------------------------------------------------------------------------------------------


@pytest.mark.volumes
def test_agent_backend_seed_workflow(daytona):
    user = f"user-{RUN}"
    vol = daytona.volume.get(f"ws-{user}", create=True)
    made = []
    try:
        def thread_sandbox(thread: str):
            sb = daytona.create(
                CreateSandboxFromSnapshotParams(
                    labels={"user": user, "thread": thread},
                    volumes=[VolumeMount(volume_id=vol.id, mount_path="/workspace")],
                    auto_stop_interval=15,
                ),
                timeout=120,
            )
            made.append(sb)
            return sb

        first = thread_sandbox("t1")
        assert sh(first, "echo hi")[1] == "hi\n"
        first.fs.upload_file(b"notes from t1", "/workspace/notes.txt")
        assert first.fs.download_file("/workspace/notes.txt") == b"notes from t1"
        listed = [s.id for s in daytona.list(ListSandboxesQuery(labels={"user": user}))]
        assert listed == [first.id]
        daytona.delete(first, wait=True)
        second = thread_sandbox("t2")
        assert second.fs.download_file("/workspace/notes.txt") == b"notes from t1"
        assert [s.labels["thread"] for s in daytona.list(ListSandboxesQuery(labels={"user": user}))] == ["t2"]
    finally:
        for sb in made:
            try:
                daytona.delete(sb, wait=True)
            except DaytonaError:
                pass
        try:
            daytona.volume.delete(vol)
        except DaytonaError:
            pass


# ---------------------------------------------------------------------------------------------
# TypeScript SDK under node
# ---------------------------------------------------------------------------------------------


@pytest.mark.async_sdk
def test_typescript_sdk(server):
    node = shutil.which("node")
    if not node or not (TS_DIR / "node_modules" / "@daytonaio" / "sdk").is_dir():
        pytest.skip("node or tests/e2e/ts/node_modules missing: run scripts/install-test-deps.sh")
    env = {**os.environ, "DAYTONA_API_KEY": server.api_key, "DAYTONA_API_URL": server.api_url, "RUN_ID": RUN}
    proc = subprocess.run([node, "conformance.mjs"], cwd=TS_DIR, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "ALL OK" in proc.stdout
