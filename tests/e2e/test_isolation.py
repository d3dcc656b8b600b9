"""Isolation, seen from inside a sandbox (through the SDK's process.exec) and from the host."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from daytona import CreateSandboxFromSnapshotParams, DaytonaError

import support
from support import sh

pytestmark = pytest.mark.isolation

NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")


@pytest.fixture(scope="module")
def user_sb(module_sandboxes):
    """A default sandbox (default snapshot, default user `daytona`)."""
    return module_sandboxes()


@pytest.fixture(scope="module")
def root_sb(module_sandboxes):
    """A default-snapshot sandbox whose commands run as root (uid 0 inside)."""
    sb = module_sandboxes(CreateSandboxFromSnapshotParams(os_user="root"))
    code, out = sh(sb, "id -u")
    assert (code, out.strip()) == (0, "0"), f"os_user='root' sandbox does not run commands as uid 0: {out!r}"
    return sb


@pytest.fixture(params=["user", "root"])
def any_sb(request):
    return request.getfixturevalue(f"{request.param}_sb")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Process tree and namespaces
# ---------------------------------------------------------------------------------------------


def test_pid1_is_the_sandbar_agent(user_sb):
    code, out = sh(user_sb, "cat /proc/1/cmdline | tr '\\0' ' '")
    assert code == 0, out
    assert "sandbar" in out and "agent" in out, f"PID 1 inside the sandbox is {out!r}, not `sandbar agent`"
    host_pid, _ = support.sandbox_init(user_sb.id)
    assert "agent" in support.proc_cmdline(host_pid), "the host process that is the sandbox's PID 1 is not the agent"


def test_sandbox_sees_only_its_own_processes(user_sb):
    code, out = sh(user_sb, "for p in /proc/[0-9]*; do echo \"$(basename $p) $(tr '\\0' ' ' < $p/cmdline)\"; done")
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert not any("serve --listen" in line or "pytest" in line for line in lines), (
        "host processes are visible inside the sandbox:\n" + out
    )
    assert len(lines) < 30, f"{len(lines)} processes visible inside a fresh sandbox:\n{out}"


def test_sandbox_has_its_own_namespaces(user_sb):
    code, out = sh(user_sb, "for n in " + " ".join(NAMESPACES) + "; do echo $n $(readlink /proc/self/ns/$n); done")
    assert code == 0, out
    inside = dict(line.split(None, 1) for line in out.strip().splitlines())
    shared = [n for n in NAMESPACES if inside.get(n) == os.readlink(f"/proc/self/ns/{n}")]
    assert not shared, f"the sandbox shares these namespaces with the host: {shared}"


def test_hostname_is_the_sandbox_name(create_sandbox):
    host_before = os.uname().nodename
    name = f"e2e-host-{support.short_id()}"
    sb = create_sandbox(CreateSandboxFromSnapshotParams(name=name))
    code, out = sh(sb, "hostname 2>/dev/null || cat /proc/sys/kernel/hostname")
    assert code == 0, out
    assert out.strip() == name
    assert os.uname().nodename == host_before, "creating a sandbox changed the host's hostname"


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


def test_network_block_all_leaves_only_loopback(create_sandbox):
    sb = create_sandbox(CreateSandboxFromSnapshotParams(network_block_all=True))
    sb.refresh_data()
    assert sb.network_block_all is True
    code, out = sh(sb, "cat /proc/net/dev")
    assert code == 0, out
    ifaces = [line.split(":", 1)[0].strip() for line in out.splitlines()[2:] if ":" in line]
    assert ifaces == ["lo"], f"network_block_all sandbox has interfaces {ifaces}"


def test_sandbox_cannot_reach_host_loopback_services(server, user_sb):
    """The API (and anything else bound to the host's 127.0.0.1) must be out of reach, also
    through a user-space network stack's host gateway (slirp4netns' 10.0.2.2)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    host_only_port = listener.getsockname()[1]
    script = (
        "import json, socket, struct\n"
        "targets = ['127.0.0.1', '10.0.2.2', 'localhost']\n"
        "try:\n"
        "    for line in open('/proc/net/route').read().splitlines()[1:]:\n"
        "        f = line.split()\n"
        "        if f[1] == '00000000':\n"
        "            targets.append(socket.inet_ntoa(struct.pack('<L', int(f[2], 16))))\n"
        "except OSError:\n"
        "    pass\n"
        "res = {}\n"
        f"for port in ({server.port}, {host_only_port}):\n"
        "    for t in targets:\n"
        "        try:\n"
        "            socket.create_connection((t, port), timeout=3).close()\n"
        "            res[f'{t}:{port}'] = 'connected'\n"
        "        except Exception as e:\n"
        "            res[f'{t}:{port}'] = type(e).__name__\n"
        "print(json.dumps(res))\n"
    )
    try:
        code, out = sh(user_sb, support.python_cmd(script), timeout=60)
    finally:
        listener.close()
    assert code == 0, out
    res = support.last_json_line(out)
    reached = [t for t, r in res.items() if r == "connected"]
    assert not reached, f"the sandbox reached host-loopback services at {reached} ({res})"


# ---------------------------------------------------------------------------------------------
# Filesystem
# ---------------------------------------------------------------------------------------------


def test_host_files_are_invisible(server, any_sb):
    tag = support.short_id()
    markers = [Path(f"/tmp/sandbar-e2e-marker-{tag}"), Path(f"/var/tmp/sandbar-e2e-marker-{tag}")]
    if Path("/root").is_dir():
        markers.append(Path(f"/root/.sandbar-e2e-marker-{tag}"))
    for m in markers:
        m.write_text("host secret\n")
    try:
        paths = [*markers, support.REPO / "Cargo.toml", server.data_dir, Path.home() / ".cargo"]
        if Path("/work").is_dir():
            paths.append(Path("/work"))
        script = "; ".join(f"[ -e '{p}' ] && echo VISIBLE {p}" for p in paths) + "; echo checked"
        code, out = sh(any_sb, script)
        assert "checked" in out, out
        visible = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("VISIBLE ")]
        assert not visible, f"host paths visible inside the sandbox: {visible}"
    finally:
        for m in markers:
            m.unlink(missing_ok=True)


def test_host_devices_are_not_exposed(any_sb):
    code, out = sh(any_sb, "ls -1 /dev")
    assert code == 0, out
    inside = set(out.split())
    host_block = set(os.listdir("/sys/block")) if os.path.isdir("/sys/block") else set()
    exposed = sorted((host_block | {"mem", "kmem", "port", "kvm", "kmsg"}) & inside)
    assert not exposed, f"host devices visible in the sandbox's /dev: {exposed}"
    assert {"null", "zero", "urandom"} <= inside, f"basic devices missing from /dev: {sorted(inside)}"


def test_default_snapshot_user_and_workdir(user_sb):
    code, out = sh(user_sb, "id -un; id -u; pwd; echo $HOME; python3 -c 'print(41 + 1)'")
    assert code == 0, out
    assert out.split() == ["daytona", "1000", "/home/daytona", "/home/daytona", "42"]
    assert user_sb.user == "daytona"
    assert user_sb.get_work_dir() == "/home/daytona"


def test_sandbox_user_cannot_write_usr(user_sb):
    code, out = sh(user_sb, "touch /usr/bin/sandbar-e2e-denied")
    assert code != 0, "the unprivileged sandbox user could write to /usr/bin"


def test_writes_to_usr_stay_in_the_sandbox(root_sb):
    tag = support.short_id()
    new_file = Path(f"/usr/bin/sandbar-e2e-{tag}")
    victim = next(
        p for p in (Path("/usr/share/common-licenses/GPL-3"), Path("/usr/bin/env"), Path("/usr/bin/true")) if p.exists()
    )
    victim_dir = next(d for d in sorted(Path("/usr/share/doc").iterdir()) if d.is_dir() and any(d.iterdir()))
    before = (sha256(victim), sorted(p.name for p in victim_dir.iterdir()))
    code, out = sh(
        root_sb,
        f"echo pwned > {new_file} && cat {new_file} && echo tampered > {victim} && "
        f"rm -rf {victim_dir} && test ! -e {victim_dir} && echo ALL-DONE",
    )
    assert code == 0 and "ALL-DONE" in out, f"writing inside the sandbox's /usr failed (exit {code}): {out}"
    assert not new_file.exists(), f"{new_file} written inside the sandbox appeared on the host"
    assert (sha256(victim), sorted(p.name for p in victim_dir.iterdir())) == before, "the host's /usr changed"
    code, out = sh(root_sb, f"cat {new_file}; cat {victim}; test -e {victim_dir} || echo GONE")
    assert out.split() == ["pwned", "tampered", "GONE"], f"the sandbox lost its own changes: {out!r}"


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------


def test_root_inside_is_unprivileged_on_host(root_sb):
    code, out = sh(root_sb, "id -u; cat /proc/self/uid_map")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == "0"
    inside, outside, count = (int(x) for x in lines[1].split())
    assert inside == 0 and outside != 0, f"uid 0 in the sandbox maps to host uid {outside}"
    assert outside >= 100000, f"sandbox uid 0 maps to host uid {outside} (< 100000)"
    sh(root_sb, "nohup sleep 2345 >/dev/null 2>&1 &")
    init_pid, _ = support.sandbox_init(root_sb.id)
    pidns = os.readlink(f"/proc/{init_pid}/ns/pid")
    members = {}
    for pid in support.sandbox_host_pids(root_sb.id):
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == pidns:
                members[pid] = ([int(u) for u in support.proc_status(pid)["Uid"].split()], support.proc_cmdline(pid))
        except (OSError, KeyError):
            continue
    assert any("sleep 2345" in cmd for _, cmd in members.values()), f"root's sleep not found on the host: {members}"
    low = {pid: v for pid, v in members.items() if min(v[0]) < 100000}
    assert not low, f"processes of the sandbox run with host uids below 100000: {low}"
    for pid, (_, cmd) in members.items():
        if "sleep 2345" in cmd:
            os.kill(pid, 9)


# ---------------------------------------------------------------------------------------------
# Resource limits
# ---------------------------------------------------------------------------------------------


def test_memory_limit_oom_kills_with_137_and_sandbox_survives(daytona, create_sandbox):
    sb = create_sandbox()
    limit_gib = sb.memory or 1
    mem_file = support.cgroup_file(sb.id, "memory", "memory.max" if support.cgroup_is_v2_only() else "memory.limit_in_bytes")
    if mem_file.exists():
        value = mem_file.read_text().strip()
        assert value != "max" and int(value) <= limit_gib << 30, f"{mem_file} = {value}, sandbox memory = {limit_gib} GiB"
    code, out = sh(sb, f'python3 -c "b = bytearray({limit_gib + 1} << 30); print(len(b))"', timeout=180)
    assert code == 137, f"allocating {limit_gib + 1} GiB in a {limit_gib} GiB sandbox ended with {code}: {out[-500:]}"
    code, out = sh(sb, "echo ok")
    assert (code, out.strip()) == (0, "ok")
    assert support.state_of(daytona.get(sb.id)) == "started"


@pytest.mark.parametrize("mount", ["/tmp", "/dev/shm"])
def test_filling_a_tmpfs_fails_with_enospc_and_sandbox_survives(daytona, create_sandbox, mount):
    # tmpfs pages are charged to the sandbox's memory limit: without a size cap, filling /tmp
    # would OOM-kill the sandbox instead of failing the write.
    sb = create_sandbox()
    limit_gib = sb.memory or 1
    code, out = sh(sb, f"head -c {limit_gib + 1}G /dev/zero > {mount}/fill", timeout=180)
    assert code != 0 and "No space left on device" in out, f"filling {mount}: exit {code}: {out[-500:]}"
    code, out = sh(sb, f"rm -f {mount}/fill && echo ok")
    assert (code, out.strip()) == (0, "ok")
    assert support.state_of(daytona.get(sb.id)) == "started"


def test_fork_bomb_is_stopped_by_pids_limit(server, daytona, create_sandbox):
    sb = create_sandbox()
    pids_max_file = support.cgroup_file(sb.id, "pids", "pids.max")
    assert pids_max_file.exists(), f"no pids limit at {pids_max_file}"
    pids_max = pids_max_file.read_text().strip()
    assert pids_max.isdigit(), f"{pids_max_file} = {pids_max!r}: fork bombs are not limited"
    outcome: dict = {}

    def bomb():
        try:
            outcome["result"] = sb.process.exec("bash -c ':(){ :|:& };:'", timeout=5)
        except Exception as exc:  # noqa: BLE001 - a timeout error is an acceptable end
            outcome["error"] = exc

    t = threading.Thread(target=bomb, daemon=True)
    t.start()
    time.sleep(2)  # let the bomb grow to the limit
    for _ in range(20):
        subprocess.run(["true"], check=True)  # the host can still fork
    current = support.cgroup_file(sb.id, "pids", "pids.current")
    if current.exists():
        assert int(current.read_text()) <= int(pids_max)
    t.join(90)
    assert not t.is_alive(), "exec of a fork bomb with timeout=5 had not returned after 90 s"
    if "error" in outcome:
        assert isinstance(outcome["error"], DaytonaError), repr(outcome["error"])

    def answers():
        try:
            return sh(sb, "echo ok", timeout=10)[1].strip() == "ok"
        except DaytonaError:
            return False

    support.wait_until(answers, 60, 1, "the sandbox to answer `echo ok` after the fork bomb")
    daytona.delete(sb, timeout=60)
    support.assert_no_leaks(sb.id, server.data_dir, timeout=30)


# ---------------------------------------------------------------------------------------------
# Forbidden syscalls
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", list(support.FORBIDDEN_SYSCALLS))
def test_forbidden_syscall_fails_with_eperm(any_sb, call):
    code, out = sh(any_sb, support.python_cmd(support.syscall_probe_script(call)))
    res = support.last_json_line(out)
    assert res["errno"] == support.EPERM, (
        f"{call} as {any_sb.user!r}: returned {res['ret']} errno {res['errno']} {res['errname']!r}, expected EPERM"
    )


def test_unshare_command_fails(any_sb):
    code, out = sh(any_sb, "unshare -Ur true")
    assert code != 0, f"`unshare -Ur true` succeeded inside the sandbox: {out!r}"


def test_bind_mount_command_fails(root_sb):
    code, out = sh(root_sb, "mkdir -p /tmp/e2e-mnt && mount --bind /proc /tmp/e2e-mnt; echo rc=$?; ls /tmp/e2e-mnt | head -3")
    assert "rc=0" not in out, f"`mount --bind` succeeded inside the sandbox: {out!r}"

