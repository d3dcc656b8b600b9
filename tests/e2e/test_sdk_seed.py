"""The Daytona SDK seed workflow (contract §11–§13) with daytona==0.226.1 and its current names,
against real sandboxes: volumes, create with labels/env/volume, exec, files, sessions, preview
links, labels and listing, auto-stop, stop/start, delete and the not-found errors."""

from __future__ import annotations

import os
import time

import pytest
from daytona import (
    CreateSandboxFromSnapshotParams,
    DaytonaConflictError,
    DaytonaError,
    DaytonaFileNotFoundError,
    DaytonaNotFoundError,
    DaytonaTimeoutError,
    FileDownloadRequest,
    FileUpload,
    ListSandboxesQuery,
    SessionExecuteRequest,
    VolumeMount,
)

import support
from support import make_client, sh, state_of

RUN = support.short_id()


def value(x) -> str:
    return str(getattr(x, "value", x))


@pytest.fixture(scope="module")
def vol(daytona):
    v = daytona.volume.get(f"e2e-seed-vol-{RUN}", create=True)
    yield v
    try:
        daytona.volume.delete(v)
    except DaytonaError:
        pass


@pytest.fixture(scope="module")
def seed_sb(daytona, vol, module_sandboxes):
    return module_sandboxes(
        CreateSandboxFromSnapshotParams(
            volumes=[VolumeMount(volume_id=vol.id, mount_path="/workspace")],
            auto_stop_interval=15,
            labels={"suite": "e2e-seed", "run": RUN},
            env_vars={"FOO": "bar"},
        )
    )


# ---------------------------------------------------------------------------------------------
# Volumes and create
# ---------------------------------------------------------------------------------------------


@pytest.mark.volumes
def test_volume_get_or_create(daytona, vol):
    assert value(vol.state) == "ready"
    again = daytona.volume.get(vol.name)
    assert again.id == vol.id
    assert vol.id in [v.id for v in daytona.volume.list()]
    with pytest.raises(DaytonaNotFoundError):
        daytona.volume.get(f"e2e-no-such-volume-{RUN}")


@pytest.mark.seed
def test_create_with_labels_env_and_volume(seed_sb):
    assert state_of(seed_sb) == "started"
    assert seed_sb.labels["suite"] == "e2e-seed"
    assert seed_sb.labels["code-toolbox-language"] == "python"
    assert seed_sb.auto_stop_interval == 15
    assert not seed_sb.toolbox_proxy_url.endswith("/")
    seed_sb.refresh_data()
    assert seed_sb.env["FOO"] == "bar"
    assert [v.mount_path for v in seed_sb.volumes] == ["/workspace"]
    code, out = sh(seed_sb, "echo $FOO; test -d /workspace && echo mounted")
    assert (code, out.split()) == (0, ["bar", "mounted"]), out


@pytest.mark.volumes
def test_volume_mount_is_writable_by_the_sandbox_user(seed_sb):
    code, out = sh(seed_sb, "id -un; touch /workspace/.by-user && mkdir -p /workspace/dir-by-user && echo writable")
    assert (code, out.split()) == (0, ["daytona", "writable"]), f"the default user cannot write to its volume: {out}"


@pytest.mark.seed
def test_default_create_and_name_conflict(daytona, create_sandbox):
    sb = create_sandbox()
    assert state_of(sb) == "started"
    assert sh(sb, "echo hello")[1] == "hello\n"
    name = f"e2e-dup-{RUN}"
    create_sandbox(CreateSandboxFromSnapshotParams(name=name))
    with pytest.raises(DaytonaConflictError):
        create_sandbox(CreateSandboxFromSnapshotParams(name=name))
    assert daytona.get(name).name == name


# ---------------------------------------------------------------------------------------------
# Exec
# ---------------------------------------------------------------------------------------------


@pytest.mark.seed
def test_exec_exit_code_output_cwd_env_and_timeout(seed_sb):
    r = seed_sb.process.exec("echo hello && echo err 1>&2 && exit 3", timeout=300)
    assert r.exit_code == 3
    assert "hello" in r.result and "err" in r.result
    assert seed_sb.process.exec("pwd", cwd="/workspace").result.strip() == "/workspace"
    assert seed_sb.process.exec("echo $X", env={"X": "1"}).result.strip() == "1"
    t0 = time.monotonic()
    with pytest.raises(DaytonaTimeoutError):
        seed_sb.process.exec("sleep 37", timeout=1)
    elapsed = time.monotonic() - t0
    # The SDK's own HTTP timeout is timeout+5 s: the server must answer (408) well before that.
    assert elapsed < 5, f"exec(timeout=1) answered after {elapsed:.1f} s: the server does not enforce the timeout"
    ps = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^sleep 37'"
    assert sh(seed_sb, ps)[1].strip() == "0", "the command that timed out is still running"


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@pytest.mark.files
def test_upload_download_list_info_delete(seed_sb):
    fs = seed_sb.fs
    fs.upload_file(b"hello bytes", "/workspace/a.txt")
    assert fs.download_file("/workspace/a.txt") == b"hello bytes"
    entries = {f.name: f for f in fs.list_files("/workspace")}
    assert "a.txt" in entries and entries["a.txt"].size == 11 and not entries["a.txt"].is_dir
    info = fs.get_file_info("/workspace/a.txt")
    assert info.size == 11 and not info.is_dir and info.name == "a.txt"
    assert fs.get_file_info("/workspace").is_dir
    fs.delete_file("/workspace/a.txt")
    with pytest.raises(DaytonaFileNotFoundError):
        fs.download_file("/workspace/a.txt")
    with pytest.raises(DaytonaNotFoundError):
        fs.get_file_info("/workspace/a.txt")
    with pytest.raises(DaytonaNotFoundError):
        fs.get_file_info("/workspace/nope")


@pytest.mark.files
def test_binary_roundtrip_1mib(seed_sb):
    blob = os.urandom(1 << 20)
    seed_sb.fs.upload_file(blob, "/workspace/blob.bin")
    assert seed_sb.fs.download_file("/workspace/blob.bin") == blob
    code, out = sh(seed_sb, "wc -c < /workspace/blob.bin")
    assert out.strip() == str(1 << 20)


@pytest.mark.files
def test_upload_files_then_download_files_with_a_missing_path(seed_sb):
    fs = seed_sb.fs
    fs.upload_files([FileUpload(b"1", "/workspace/d/1.txt"), FileUpload(b"2", "/workspace/d/sub/2.bin")])
    res = fs.download_files([FileDownloadRequest("/workspace/d/1.txt"), FileDownloadRequest("/workspace/d/nope")])
    assert res[0].source == "/workspace/d/1.txt" and res[0].result == b"1" and not res[0].error
    assert res[1].source == "/workspace/d/nope" and res[1].error and res[1].result is None
    fs.delete_file("/workspace/d", recursive=True)
    with pytest.raises(DaytonaNotFoundError):
        fs.get_file_info("/workspace/d")


@pytest.mark.files
def test_folder_move_search_find(seed_sb):
    fs = seed_sb.fs
    fs.create_folder("/workspace/x", "755")
    fs.upload_file(b"hello needle\n", "/workspace/x/n.txt")
    fs.move_files("/workspace/x/n.txt", "/workspace/x/moved.txt")
    assert [f.name for f in fs.list_files("/workspace/x")] == ["moved.txt"]
    assert any(p.endswith("moved.txt") for p in fs.search_files("/workspace", "*.txt").files)
    matches = fs.find_files("/workspace/x", "needle")
    assert matches and matches[0].file.endswith("moved.txt") and matches[0].line == 1 and "needle" in matches[0].content
    fs.delete_file("/workspace/x", recursive=True)


@pytest.mark.files
def test_uploaded_file_belongs_to_the_sandbox_user(seed_sb):
    seed_sb.fs.upload_file(b"mine\n", "own.txt")  # relative: the work dir (/home/daytona)
    code, out = sh(seed_sb, "echo more >> ~/own.txt && stat -c %U ~/own.txt && cat ~/own.txt")
    assert (code, out.split()) == (0, ["daytona", "mine", "more"]), out


# ---------------------------------------------------------------------------------------------
# Volumes across sandboxes
# ---------------------------------------------------------------------------------------------


@pytest.mark.volumes
def test_volume_content_outlives_the_sandbox(daytona, vol, seed_sb, create_sandbox):
    payload = f"persisted-{RUN}"
    seed_sb.fs.upload_file(payload.encode(), "/workspace/persist.txt")
    other = create_sandbox(
        CreateSandboxFromSnapshotParams(volumes=[VolumeMount(volume_id=vol.name, mount_path="/data")])
    )
    code, out = sh(other, "cat /data/persist.txt")
    assert (code, out.strip()) == (0, payload), "a second sandbox mounting the volume by name does not see its files"
    daytona.delete(other, timeout=60)
    assert sh(seed_sb, "cat /workspace/persist.txt")[1].strip() == payload


@pytest.mark.volumes
def test_volume_in_use_cannot_be_deleted_and_free_one_can(daytona, vol, seed_sb):
    with pytest.raises(DaytonaConflictError):
        daytona.volume.delete(vol)
    spare = daytona.volume.create(f"e2e-spare-{RUN}")
    daytona.volume.delete(spare)

    def gone():
        try:
            v = daytona.volume.get(spare.name)
        except DaytonaNotFoundError:
            return True
        return value(v.state) in ("deleted", "pending_delete", "deleting")

    support.wait_until(gone, 10, 0.2, "the deleted volume to disappear")


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


@pytest.mark.sessions
def test_session_keeps_state_and_runs_async_commands(seed_sb):
    p = seed_sb.process
    sid = f"s-{RUN}"
    p.create_session(sid)
    try:
        r = p.execute_session_command(sid, SessionExecuteRequest(command="export A=1"))
        assert r.exit_code == 0
        r = p.execute_session_command(sid, SessionExecuteRequest(command="echo $A"))
        assert r.exit_code == 0 and (r.stdout or r.output or "").strip() == "1"
        r = p.execute_session_command(
            sid, SessionExecuteRequest(command="echo out-$A; echo err-$A 1>&2; sleep 1; echo done", run_async=True)
        )
        cmd_id = r.cmd_id
        assert cmd_id

        def finished():
            c = p.get_session_command(sid, cmd_id)
            return c if c.exit_code is not None else None

        cmd = support.wait_until(finished, 30, 0.2, "the async session command to finish")
        assert cmd.exit_code == 0
        logs = p.get_session_command_logs(sid, cmd_id)
        assert "out-1" in logs.stdout and "done" in logs.stdout
        assert "err-1" in logs.stderr and "err-1" not in logs.stdout
        assert sid in [s.session_id for s in p.list_sessions()]
        assert len(p.get_session(sid).commands) == 3
    finally:
        p.delete_session(sid)
    assert sid not in [s.session_id for s in p.list_sessions()]


# ---------------------------------------------------------------------------------------------
# Preview links
# ---------------------------------------------------------------------------------------------


@pytest.mark.preview
def test_preview_link_shape(seed_sb):
    p = seed_sb.get_preview_link(8080)
    assert p.sandbox_id == seed_sb.id
    assert p.url.startswith(("http://", "https://")) and "8080" in p.url, p.url
    assert isinstance(p.token, str) and p.token


@pytest.mark.preview
def test_preview_link_serves_http_from_the_sandbox(create_sandbox):
    sb = create_sandbox()
    sh(sb, f"mkdir -p ~/site && echo preview-{RUN} > ~/site/index.html")
    sh(sb, "cd ~/site && nohup python3 -m http.server 8080 > /tmp/http.log 2>&1 &")
    probe = support.python_cmd("import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=2)")
    support.wait_until(lambda: sh(sb, probe)[0] == 0, 20, 0.3, "python3 -m http.server to listen in the sandbox")
    p = sb.get_preview_link(8080)
    r = support.fetch(p.url, {"X-Daytona-Preview-Token": p.token})
    assert r.status_code == 200 and f"preview-{RUN}" in r.text, f"{p.url}: {r.status_code} {r.text[:200]}"
    r = support.fetch(p.url)
    assert r.status_code == 401, f"private sandbox preview without credentials: {r.status_code}"


# ---------------------------------------------------------------------------------------------
# Labels, listing, auto-stop, get by name
# ---------------------------------------------------------------------------------------------


@pytest.mark.seed
def test_labels_replace_and_list_by_labels_with_pagination(daytona, seed_sb, create_sandbox):
    labels = {"suite": "e2e-seed", "run": RUN, "extra": "1"}
    assert seed_sb.set_labels(labels) == labels
    assert daytona.get(seed_sb.id).labels == labels
    others = [create_sandbox(CreateSandboxFromSnapshotParams(labels={"suite": "e2e-seed", "run": RUN})) for _ in range(2)]
    want = {seed_sb.id, *(o.id for o in others)}
    ids = [s.id for s in daytona.list(ListSandboxesQuery(labels={"suite": "e2e-seed", "run": RUN}))]
    assert set(ids) == want and len(ids) == len(want)
    paged = [s.id for s in daytona.list(ListSandboxesQuery(labels={"run": RUN}, limit=1))]
    assert sorted(paged) == sorted(want), "cursor pagination with limit=1 lost or repeated sandboxes"
    assert [s.id for s in daytona.list(ListSandboxesQuery(labels={"extra": "1", "run": RUN}))] == [seed_sb.id]
    assert not list(daytona.list(ListSandboxesQuery(labels={"run": RUN, "suite": "nope"})))


@pytest.mark.seed
def test_autostop_setter_and_get_by_name(daytona, seed_sb):
    seed_sb.set_autostop_interval(30)
    assert daytona.get(seed_sb.id).auto_stop_interval == 30
    assert daytona.get(seed_sb.name).id == seed_sb.id


@pytest.mark.seed
def test_stop_start_keeps_files_in_home_and_volume(daytona, seed_sb):
    assert sh(seed_sb, "echo home-kept > ~/kept.txt")[0] == 0
    seed_sb.fs.upload_file(b"vol-kept\n", "/workspace/kept.txt")
    daytona.stop(seed_sb)
    assert state_of(daytona.get(seed_sb.id)) == "stopped"
    with pytest.raises(DaytonaError):
        seed_sb.process.exec("echo x", timeout=10)
    daytona.start(seed_sb)
    assert state_of(seed_sb) == "started"
    code, out = sh(seed_sb, "cat ~/kept.txt /workspace/kept.txt; echo $FOO")
    assert out.split() == ["home-kept", "vol-kept", "bar"], out


@pytest.mark.seed
def test_delete_then_get_is_not_found(daytona):
    sb = daytona.create(timeout=120)
    daytona.delete(sb, timeout=60, wait=True)
    try:
        got = daytona.get(sb.id)
        assert state_of(got) == "destroyed"
    except DaytonaNotFoundError:
        pass
    with pytest.raises(DaytonaNotFoundError) as ei:
        daytona.get("does-not-exist")
    assert ei.value.status_code == 404
    assert "does-not-exist" in str(ei.value)


@pytest.mark.seed
def test_deprecated_polling_client(server):
    d = make_client(server, use_deprecated_polling=True)
    sb = d.create(timeout=120)
    try:
        assert state_of(sb) == "started"
        assert sh(sb, "echo polled")[1].strip() == "polled"
        sb.stop()
        assert state_of(sb) == "stopped"
        sb.start()
        assert state_of(sb) == "started"
    finally:
        d.delete(sb, timeout=60, wait=True)


@pytest.mark.sessions
def test_session_command_logs_stream_over_websocket(seed_sb):
    import asyncio

    p = seed_sb.process
    sid = f"ws-{RUN}"
    p.create_session(sid)
    try:
        r = p.execute_session_command(
            sid,
            SessionExecuteRequest(
                command="for i in 1 2 3; do echo out$i; echo err$i 1>&2; sleep 0.2; done", run_async=True
            ),
        )
        out: list[str] = []
        err: list[str] = []
        asyncio.run(
            asyncio.wait_for(p.get_session_command_logs_async(sid, r.cmd_id, out.append, err.append), timeout=30)
        )
        stdout, stderr = "".join(out), "".join(err)
        assert stdout.split() == ["out1", "out2", "out3"], f"stdout={stdout!r} stderr={stderr!r}"
        assert stderr.split() == ["err1", "err2", "err3"], f"stdout={stdout!r} stderr={stderr!r}"
    finally:
        p.delete_session(sid)
