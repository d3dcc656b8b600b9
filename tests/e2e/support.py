"""Helpers of the end-to-end suite: starting the real `sandbar` server, the key/snapshot CLI, and
looking at a sandbox from the host (cgroups, processes, mounts, data directory).

Nothing in here talks to the SDK; conftest.py wires these into pytest fixtures.

Host layout this suite relies on (see the brief in scripts/test.sh's header and the README):
  DATA_DIR/sandboxes/<id>/                      per-sandbox state (writable layer, sockets, ...)
  /sys/fs/cgroup/<ctrl>/sandbar/<id>            cgroup v1 (ctrl in memory, pids, cpu, cpuacct)
  /sys/fs/cgroup/sandbar/<id>                   cgroup v2
A sandbox's mounts live only in its own mount namespace: the host's /proc/mounts never names it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import httpx

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = (
    Path(os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))) / "x86_64-unknown-linux-gnu" / "debug" / "sandbar"
)
SANDBAR_BIN = Path(os.environ.get("SANDBAR_BIN", str(DEFAULT_BIN)))
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
READY_TIMEOUT = 30.0
KEEP_DATA = os.environ.get("SANDBAR_E2E_KEEP") == "1"

# Every server started by this process, so conftest can attach logs to failing tests and clean up.
SERVERS: list["SandbarServer"] = []
# Measurements printed in the terminal summary (never asserted).
PERF_LINES: list[str] = []


class E2EError(AssertionError):
    """A precondition of the suite (binary, CLI, server start) did not hold."""


# ---------------------------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls `predicate` until it returns something truthy; returns that value or raises."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - remembered and reported on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def short_id() -> str:
    return os.urandom(4).hex()


def require_binary() -> Path:
    if not SANDBAR_BIN.is_file() or not os.access(SANDBAR_BIN, os.X_OK):
        raise E2EError(
            f"sandbar binary not found at {SANDBAR_BIN}; build it with `cargo build --workspace` "
            "(or point SANDBAR_BIN at it)"
        )
    return SANDBAR_BIN


# ---------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(require_binary()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise E2EError(
            f"`{' '.join(cmd)}` exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


KEY_RE = re.compile(r"^\s*(sb_[A-Za-z0-9_\-]+)\s*$")


def create_key(data_dir: Path, org: str | None = None, name: str | None = None) -> str:
    """`sandbar keys create --data-dir DIR [--org ORG] [--name NAME]`; the key is on its own line."""
    args = ["keys", "create", "--data-dir", str(data_dir)]
    if org:
        args += ["--org", org]
    if name:
        args += ["--name", name]
    proc = run_cli(*args)
    for line in proc.stdout.splitlines():
        m = KEY_RE.match(line)
        if m:
            return m.group(1)
    raise E2EError(f"`sandbar {' '.join(args)}` printed no `sb_...` line:\n{proc.stdout}\n{proc.stderr}")


def revoke_key(data_dir: Path, key: str, name: str) -> str:
    """Revokes `key` through `sandbar keys revoke` and returns the identifier that worked.

    The CLI takes a key id or prefix. The suite does not know the id format, so it tries the
    identifiers `keys list` shows on the line naming the key, then prefixes of the key itself.
    """
    listing = run_cli("keys", "list", "--data-dir", str(data_dir)).stdout
    candidates: list[str] = []
    for line in listing.splitlines():
        if name in line:
            for token in re.split(r"[\s|,]+", line.strip()):
                token = token.strip("\"'")
                if token and token != name and (key.startswith(token) or re.fullmatch(r"[0-9a-fA-F-]{8,}", token)):
                    candidates.append(token)
    candidates += [key[:12], key[:16], key]
    errors = []
    for ident in dict.fromkeys(candidates):
        proc = run_cli("keys", "revoke", "--data-dir", str(data_dir), ident, check=False)
        if proc.returncode == 0:
            return ident
        errors.append(f"{ident}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    raise E2EError("could not revoke the key with any identifier:\n" + "\n".join(errors) + f"\nkeys list:\n{listing}")


def import_snapshot(data_dir: Path, name: str, rootfs: Path) -> subprocess.CompletedProcess:
    return run_cli("snapshot", "import", name, "--rootfs", str(rootfs), "--data-dir", str(data_dir), timeout=300)


def build_busybox_rootfs(root: Path) -> Path:
    """A root filesystem holding only Debian's static busybox (and users root and daytona)."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise E2EError("busybox not found: install Debian's busybox-static (scripts/install-test-deps.sh)")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "home/daytona"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s"], check=True, capture_output=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\ndaytona:x:1000:1000:daytona:/home/daytona:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\ndaytona:x:1000:\n")
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "home" / "daytona", 1000, 1000)
    return root


# ---------------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------------


@dataclass
class SandbarServer:
    """One `sandbar serve` process on a data directory; restartable on the same dir and port."""

    data_dir: Path
    api_key: str
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Pass --listen/--data-dir as SANDBAR_LISTEN/SANDBAR_DATA_DIR instead of flags.
    config_by_env: bool = False
    proc: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    starts: int = 0
    # Keys created through the CLI for this data dir (other organizations too), for cleanup.
    extra_keys: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "SandbarServer":
        assert not self.running(), "server already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBAR_")}
        env.update(
            {
                "SANDBAR_API_KEY": self.api_key,
                "RUST_BACKTRACE": "1",
                "RUST_LOG": os.environ.get("SANDBAR_E2E_RUST_LOG", os.environ.get("RUST_LOG", "info")),
            }
        )
        env.update(self.extra_env)
        cmd = [str(require_binary()), "serve"]
        if self.config_by_env:
            env["SANDBAR_LISTEN"] = f"127.0.0.1:{self.port}"
            env["SANDBAR_DATA_DIR"] = str(self.data_dir)
        else:
            cmd += ["--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)]
        self.starts += 1
        self._note(f"---- start #{self.starts}: {' '.join(cmd)}")
        # Own session: signals sent to the test runner's group never reach the server, and the
        # server's death never takes the test runner with it.
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        ready = threading.Event()
        seen = threading.Event()  # the ready line of *this* start (the port is reused on restart)
        marker = f"listening on http://127.0.0.1:{self.port}"
        proc = self.proc

        def pump(stream, tag: str):
            # Sandbox processes may inherit these pipes, so EOF is no sign of the server's exit.
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._note(f"[{tag}] {line}")
                if marker in line:
                    seen.set()
                    ready.set()
            stream.close()

        def reap():
            proc.wait()
            ready.set()

        for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
            threading.Thread(target=pump, args=(stream, tag), daemon=True).start()
        threading.Thread(target=reap, daemon=True).start()

        if not ready.wait(READY_TIMEOUT) or not seen.is_set():
            code = proc.poll()
            if code is None:
                proc.kill()
                proc.wait()
                why = f"did not print `{marker}` within {READY_TIMEOUT:.0f}s"
            else:
                time.sleep(0.2)  # let the pumps copy the last words of the dying server
                why = f"exited with status {code} before printing `{marker}`"
            raise E2EError(f"sandbar serve {why}.\n--- server output ---\n{self.tail(80)}")
        if self not in SERVERS:
            SERVERS.append(self)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Sends `sig` to the server (not its children) and waits; returns the exit status."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self._note(f"---- sending {signal.Signals(sig).name}")
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._note(f"---- did not exit within {timeout:.0f}s of {signal.Signals(sig).name}; SIGKILL")
            self.proc.kill()
            self.proc.wait()
            raise E2EError(f"sandbar serve did not exit within {timeout:.0f}s of {signal.Signals(sig).name}")

    def kill9(self) -> None:
        if self.running():
            assert self.proc is not None
            self._note("---- kill -9")
            self.proc.kill()
            self.proc.wait()

    def restart(self, sig: int = signal.SIGTERM) -> "SandbarServer":
        if sig == signal.SIGKILL:
            self.kill9()
        else:
            self.stop(sig)
        return self.start()

    def create_key(self, org: str | None = None, name: str | None = None) -> str:
        key = create_key(self.data_dir, org=org, name=name)
        self.extra_keys.append(key)
        return key

    @property
    def all_keys(self) -> list[str]:
        return [self.api_key, *self.extra_keys]

    # -- logs ----------------------------------------------------------------------------------
    _lock = threading.Lock()

    def _note(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")

    def tail(self, n: int = 60, since: int = 0) -> str:
        with self._lock:
            return "\n".join(self.lines[max(since, len(self.lines) - n):])

    # -- raw HTTP ------------------------------------------------------------------------------
    def http(self, key: str | None = None, **kw) -> httpx.Client:
        headers = {}
        key = self.api_key if key is None else key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=kw.pop("timeout", 30), **kw)

    def sandbox_ids_on_disk(self) -> list[str]:
        d = self.data_dir / "sandboxes"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def delete_all_sandboxes(self, keys: Iterable[str]) -> list[str]:
        """Deletes every sandbox the given keys can see; returns the ids it asked to delete."""
        ids = []
        for key in keys:
            with self.http(key) as c:
                cursor = None
                seen = []
                for _ in range(100):
                    params = {"limit": 200, "includeErroredDeleted": "true"}
                    if cursor:
                        params["cursor"] = cursor
                    r = c.get("/sandbox", params=params)
                    if r.status_code != 200:
                        break
                    body = r.json()
                    seen += [item["id"] for item in body.get("items", [])]
                    cursor = body.get("nextCursor")
                    if not cursor:
                        break
                for sid in seen:
                    with contextlib.suppress(httpx.HTTPError):
                        c.delete(f"/sandbox/{sid}")
                ids += seen
        return ids


# ---------------------------------------------------------------------------------------------
# Looking at a sandbox from the host
# ---------------------------------------------------------------------------------------------


def cgroup_is_v2_only() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_dirs(sandbox_id: str) -> list[Path]:
    """Every cgroup directory the layout says sandbox `sandbox_id` may own (existing or not):
    `sandbar/<id>` under each mounted v1 hierarchy (memory, pids, cpu, cpuacct, freezer, ... and
    the hybrid `unified` one), or under the v2 root."""
    if cgroup_is_v2_only():
        return [CGROUP_ROOT / "sandbar" / sandbox_id]
    dirs: dict[str, Path] = {}
    for hierarchy in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        if hierarchy.is_dir():
            dirs.setdefault(os.path.realpath(hierarchy), hierarchy / "sandbar" / sandbox_id)
    for c in CGROUP_V1_CONTROLLERS:  # named even when not mounted, so a report is explicit
        dirs.setdefault(str(CGROUP_ROOT / c), CGROUP_ROOT / c / "sandbar" / sandbox_id)
    return list(dirs.values())


def existing_cgroup_dirs(sandbox_id: str) -> list[Path]:
    return [d for d in cgroup_dirs(sandbox_id) if d.is_dir()]


def cgroup_file(sandbox_id: str, controller: str, name: str) -> Path:
    if cgroup_is_v2_only():
        return CGROUP_ROOT / "sandbar" / sandbox_id / name
    return CGROUP_ROOT / controller / "sandbar" / sandbox_id / name


def pids_in_cgroup_dirs(sandbox_id: str) -> set[int]:
    """Pids listed in the sandbox's cgroup.procs files (including nested cgroups)."""
    pids: set[int] = set()
    for top in existing_cgroup_dirs(sandbox_id):
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def pids_with_cgroup_path(sandbox_id: str) -> set[int]:
    """Pids whose /proc/<pid>/cgroup names a cgroup path containing the sandbox id."""
    pids = set()
    needle = f"/{sandbox_id}"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            text = Path("/proc", entry, "cgroup").read_text()
            if any(needle in line.split(":", 2)[-1] for line in text.splitlines()):
                pids.add(int(entry))
    return pids


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat[stat.rindex(")") + 2] in "ZX"


def sandbox_host_pids(sandbox_id: str) -> set[int]:
    """Live host processes of the sandbox. Zombies are left out: an exited process keeps its
    cgroup path in /proc/<pid>/cgroup until its parent (maybe the host's init) reaps it."""
    pids = pids_in_cgroup_dirs(sandbox_id) | pids_with_cgroup_path(sandbox_id)
    return {p for p in pids if not is_zombie(p)}


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def proc_start_time(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
    return int(stat[stat.rindex(")") + 2:].split()[19])


def proc_cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def sandbox_init(sandbox_id: str) -> tuple[int, int]:
    """(host pid, start time) of the sandbox's PID 1, found through the cgroup and NSpid."""
    for pid in sorted(sandbox_host_pids(sandbox_id)):
        with contextlib.suppress(OSError):
            nspid = proc_status(pid).get("NSpid", "").split()
            if len(nspid) > 1 and nspid[-1] == "1":
                return pid, proc_start_time(pid)
    raise AssertionError(
        f"no process of sandbox {sandbox_id} is PID 1 of a pid namespace "
        f"(cgroup dirs: {existing_cgroup_dirs(sandbox_id)}, pids: {sorted(sandbox_host_pids(sandbox_id))})"
    )


def mount_lines_mentioning(needle: str) -> list[str]:
    lines = []
    for f in ("/proc/self/mounts", "/proc/self/mountinfo"):
        with contextlib.suppress(OSError):
            lines += [line for line in Path(f).read_text().splitlines() if needle in line]
    return lines


def leak_report(sandbox_id: str, data_dir: Path) -> list[str]:
    """What the host still holds of a deleted sandbox: [] when nothing is left."""
    leaks = []
    sandbox_dir = data_dir / "sandboxes" / sandbox_id
    if sandbox_dir.exists():
        leaks.append(f"data directory {sandbox_dir} still exists")
    for d in existing_cgroup_dirs(sandbox_id):
        leaks.append(f"cgroup {d} still exists")
    for line in mount_lines_mentioning(sandbox_id):
        leaks.append(f"host mount table mentions it: {line}")
    for pid in sorted(sandbox_host_pids(sandbox_id)):
        leaks.append(f"process {pid} still runs in its cgroup: {proc_cmdline(pid)!r}")
    return leaks


def assert_no_leaks(sandbox_id: str, data_dir: Path, timeout: float = 15) -> None:
    """Waits up to `timeout` for the host to hold nothing of the sandbox (deletion may finish
    asynchronously), then fails listing what is left."""
    deadline = time.monotonic() + timeout
    while True:
        leaks = leak_report(sandbox_id, data_dir)
        if not leaks or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert not leaks, f"sandbox {sandbox_id} left things behind after deletion:\n  " + "\n  ".join(leaks)


def kill_sandbox_processes(sandbox_id: str) -> set[int]:
    """SIGKILLs every host process of the sandbox until none is left; returns the pids killed."""
    killed: set[int] = set()
    for _ in range(50):
        pids = sandbox_host_pids(sandbox_id)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.05)
    return killed


def force_cleanup(sandbox_id: str, data_dir: Path) -> None:
    """Last-resort removal of whatever a test run left on the host (not a product feature)."""
    kill_sandbox_processes(sandbox_id)
    for d in existing_cgroup_dirs(sandbox_id):
        for dirpath, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def unmount_under(path: Path) -> None:
    for target in host_mount_targets(str(path)):
        subprocess.run(["umount", "-l", target], capture_output=True)


def host_mount_targets(needle: str) -> list[str]:
    """Mount points of the host's mount namespace whose line mentions `needle`, deepest first."""
    targets = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if needle in line:
                targets.append(line.split()[4])
    return sorted(set(targets), key=len, reverse=True)


# ---------------------------------------------------------------------------------------------
# inotify: react the moment a directory entry appears (for kill -9 mid-create)
# ---------------------------------------------------------------------------------------------

IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE_SELF = 0x00000400


class DirWatcher:
    """Reports names created (or, with another mask, deleted) in one directory, as it happens
    (inotify through ctypes)."""

    def __init__(self, path: Path, mask: int = IN_CREATE | IN_MOVED_TO):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = self._libc.inotify_add_watch(self.fd, str(path).encode(), mask)
        if wd < 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(e, f"inotify_add_watch({path})")

    def next_name(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        buf = os.read(self.fd, 4096)
        _wd, _mask, _cookie, length = struct.unpack_from("iIII", buf, 0)
        return buf[16:16 + length].rstrip(b"\0").decode()

    def close(self) -> None:
        os.close(self.fd)


# ---------------------------------------------------------------------------------------------
# Scripts run inside sandboxes
# ---------------------------------------------------------------------------------------------

# x86_64 syscall numbers and harmless arguments; each call must fail with EPERM in a sandbox.
# "@TARGET@" is replaced by a fresh temporary directory, "@FD:path@" by a descriptor open on path.
FORBIDDEN_SYSCALLS = {
    "unshare(CLONE_NEWUSER)": (272, [0x10000000]),
    "mount(MS_BIND /proc)": (165, ["/proc", "@TARGET@", None, 4096, None]),
    "keyctl(JOIN_SESSION_KEYRING)": (250, [1, None]),
    "add_key(user)": (248, ["user", "sandbar-e2e", "x", 1, -2]),
    "init_module": (175, [None, 0, ""]),
    "finit_module": (313, ["@FD:/proc/self/exe@", "", 0]),
    "fsopen(proc)": (430, ["proc", 0]),
    "setns(own netns)": (308, ["@FD:/proc/self/ns/net@", 0]),
    "bpf(MAP_CREATE)": (321, [0, None, 0]),
    "perf_event_open": (298, [None, 0, -1, -1, 0]),
    "io_uring_setup": (425, [1, None]),
}


def syscall_probe_script(name: str) -> str:
    """A python3 program that makes one syscall and prints {"ret":…, "errno":…, "name":…}."""
    nr, args = FORBIDDEN_SYSCALLS[name]
    return (
        "import ctypes, json, os, tempfile\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        "target = tempfile.mkdtemp()\n"
        f"args = {args!r}\n"
        "conv = []\n"
        "for a in args:\n"
        "    if a is None: conv.append(ctypes.c_void_p(0))\n"
        "    elif isinstance(a, str) and a.startswith('@FD:'): conv.append(ctypes.c_long(os.open(a[4:-1], os.O_RDONLY)))\n"
        "    elif isinstance(a, str): conv.append(ctypes.c_char_p(a.replace('@TARGET@', target).encode()))\n"
        "    else: conv.append(ctypes.c_long(a))\n"
        f"ret = libc.syscall(ctypes.c_long({nr}), *conv)\n"
        "err = ctypes.get_errno() if ret == -1 else 0\n"
        f"print(json.dumps({{'name': {name!r}, 'ret': ret, 'errno': err, 'errname': os.strerror(err) if err else ''}}))\n"
    )


def shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def python_cmd(script: str) -> str:
    return f"python3 -c {shell_quote(script)}"


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{text}")


EPERM = errno.EPERM


# ---------------------------------------------------------------------------------------------
# SDK-side conveniences (duck-typed: no import of the SDK here)
# ---------------------------------------------------------------------------------------------


def make_client(srv: SandbarServer, key: str | None = None, **config):
    """A Daytona SDK client for `srv` (the default organization's key unless `key` is given)."""
    from daytona import Daytona, DaytonaConfig

    return Daytona(DaytonaConfig(api_key=key or srv.api_key, api_url=srv.api_url, **config))


def state_of(sb) -> str:
    """The sandbox state as a plain string ('started', 'stopped', 'error', ...)."""
    st = sb.state
    return str(getattr(st, "value", st))


def sh(sb, command: str, timeout: int = 60, **kw) -> tuple[int, str]:
    r = sb.process.exec(command, timeout=timeout, **kw)
    return r.exit_code, r.result


def fetch(url: str, headers: dict | None = None, timeout: float = 15) -> httpx.Response:
    """GET `url`; a `*.localhost` host name (not resolved by glibc) is sent to 127.0.0.1 with the
    original Host header, as a browser would."""
    u = httpx.URL(url)
    headers = dict(headers or {})
    if u.host.endswith(".localhost"):
        headers["Host"] = u.host if u.port is None else f"{u.host}:{u.port}"
        u = u.copy_with(host="127.0.0.1")
    return httpx.get(u, headers=headers, timeout=timeout, follow_redirects=False)
