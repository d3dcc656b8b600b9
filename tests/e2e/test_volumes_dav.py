"""Volumes as ext4 images and WebDAV access to them (`/dav/<volume>/`, docs/volumes.md): litmus
compliance, an rclone round trip, the seed flow between sandboxes and WebDAV, path traversal
through WebDAV and the toolbox file API, a full volume, persistence across restarts, and the
1 GiB throughput figures (printed, not asserted)."""

from __future__ import annotations

import base64
import filecmp
import http.client
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from daytona import CreateSandboxFromSnapshotParams, DaytonaError, VolumeMount

import support
from support import sh

RUN = support.short_id()
HOST_SECRET = f"sandbar-host-secret-{RUN}"

pytestmark = pytest.mark.volumes


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def dav_url(srv: support.SandbarServer, volume: str) -> str:
    return f"{srv.base_url}/dav/{volume}/"


def dav_client(srv: support.SandbarServer, key: str | None = None, basic: bool = False) -> httpx.Client:
    key = srv.api_key if key is None else key
    if basic:
        auth = "Basic " + base64.b64encode(f"anyone:{key}".encode()).decode()
    else:
        auth = f"Bearer {key}"
    return httpx.Client(base_url=srv.base_url, headers={"Authorization": auth}, timeout=120)


def raw_request(srv: support.SandbarServer, method: str, path: str, key: str | None = None) -> tuple[int, bytes]:
    """Sends `path` byte for byte (no client-side dot-segment folding, no re-encoding)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {key or srv.api_key}")
        if method == "PROPFIND":
            conn.putheader("Depth", "1")
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def volume_mnt(srv: support.SandbarServer, volume_id: str) -> Path:
    return srv.data_dir / "volumes" / volume_id / "mnt"


def create_volume(srv: support.SandbarServer, name: str, size_gib: int | None = None) -> dict:
    body = {"name": name}
    if size_gib is not None:
        body["size"] = size_gib
    with srv.http() as c:
        r = c.post("/volumes", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def delete_volume(srv: support.SandbarServer, volume_id: str) -> None:
    with srv.http() as c:
        for _ in range(50):
            r = c.delete(f"/volumes/{volume_id}")
            if r.status_code != 409:  # a sandbox just deleted may still be settling
                return
            time.sleep(0.2)


def with_volume(volume: str, path: str = "/workspace") -> CreateSandboxFromSnapshotParams:
    return CreateSandboxFromSnapshotParams(volumes=[VolumeMount(volume_id=volume, mount_path=path)])


@pytest.fixture(scope="module")
def dav_vol(server):
    v = create_volume(server, f"e2e-dav-{RUN}")
    yield v
    delete_volume(server, v["id"])


@pytest.fixture(scope="module")
def host_secret(e2e_root):
    """A host file whose content must never come back through any API."""
    path = e2e_root / f"host-secret-{RUN}.txt"
    path.write_text(HOST_SECRET + "\n")
    path.chmod(0o644)
    return path


# ---------------------------------------------------------------------------------------------
# Storage and authentication
# ---------------------------------------------------------------------------------------------


def test_volume_is_a_sparse_ext4_image_owned_by_daytona(server, dav_vol):
    vdir = server.data_dir / "volumes" / dav_vol["id"]
    image = vdir / "image.ext4"
    st = image.stat()
    assert st.st_size == 10 << 30, "default volume size is 10 GiB"
    assert st.st_blocks * 512 < 512 << 20, "the image must be sparse"
    mnt = vdir / "mnt"
    assert os.path.ismount(mnt)
    assert (mnt.stat().st_uid, mnt.stat().st_gid) == (1000, 1000)
    fstype = [line.split()[2] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[1] == str(mnt)]
    assert fstype == ["ext4"], fstype


def test_dav_authentication_and_organization_scope(server, dav_vol):
    url = f"/dav/{dav_vol['name']}/"
    r = httpx.request("PROPFIND", server.base_url + url, headers={"Depth": "0"})
    assert r.status_code == 401
    assert r.headers.get("www-authenticate") == 'Basic realm="sandbar"'
    for basic in (False, True):
        with dav_client(server, basic=basic) as c:
            assert c.request("PROPFIND", url, headers={"Depth": "0"}).status_code == 207
    with dav_client(server, key="sb_not_a_key") as c:
        assert c.request("PROPFIND", url, headers={"Depth": "0"}).status_code == 401
    # By id as well as by name.
    with dav_client(server) as c:
        assert c.request("PROPFIND", f"/dav/{dav_vol['id']}/", headers={"Depth": "0"}).status_code == 207
    other = server.create_key(org=f"dav-other-{RUN}", name=f"dav-other-{RUN}")
    with dav_client(server, key=other, basic=True) as c:
        assert c.request("PROPFIND", url, headers={"Depth": "0"}).status_code == 404
        assert c.get(url + "anything").status_code == 404


# ---------------------------------------------------------------------------------------------
# Compliance and real clients
# ---------------------------------------------------------------------------------------------


def test_litmus(server):
    litmus = shutil.which("litmus")
    if not litmus:
        pytest.fail("litmus is not installed (scripts/install-test-deps.sh installs it)", pytrace=False)
    v = create_volume(server, f"e2e-litmus-{RUN}")
    try:
        env = dict(os.environ, TESTS="basic copymove props locks http")
        proc = subprocess.run(
            [litmus, "-k", dav_url(server, v["name"]), "user", server.api_key],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        out = proc.stdout + proc.stderr
        summaries = dict(re.findall(r"<- summary for `(\w+)': of \d+ tests run: \d+ passed, (\d+) failed", out))
        assert set(summaries) == {"basic", "copymove", "props", "locks", "http"}, out
        failed = {group: int(n) for group, n in summaries.items() if int(n)}
        assert not failed and proc.returncode == 0, out
    finally:
        delete_volume(server, v["id"])


def make_tree(root: Path) -> None:
    rnd = os.urandom
    (root / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "zero.bin").write_bytes(b"")
    (root / "one.bin").write_bytes(b"\x00")
    (root / "small.bin").write_bytes(rnd(4097))
    (root / "nested" / "mid.bin").write_bytes(rnd(300_000))
    (root / "nested" / "deeper" / "big.bin").write_bytes(rnd(5 << 20))
    (root / "nested" / "deeper" / "deepest" / "name with spaces & ü.bin").write_bytes(rnd(1234))
    (root / "text.txt").write_text("hello\n" * 1000)


def same_tree(a: Path, b: Path) -> list[str]:
    diffs = []
    cmp = filecmp.dircmp(a, b)
    diffs += [f"only in {a}: {n}" for n in cmp.left_only] + [f"only in {b}: {n}" for n in cmp.right_only]
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    diffs += [f"differs: {n}" for n in mismatch + errors]
    for sub in cmp.common_dirs:
        diffs += same_tree(a / sub, b / sub)
    return diffs


def test_rclone_copy_and_sync_round_trip(server, dav_vol, tmp_path):
    rclone = shutil.which("rclone")
    if not rclone:
        pytest.fail("rclone is not installed (scripts/install-test-deps.sh installs it)", pytrace=False)
    obscured = subprocess.run([rclone, "obscure", server.api_key], capture_output=True, text=True, check=True).stdout.strip()
    env = dict(
        os.environ,
        RCLONE_CONFIG_SB_TYPE="webdav",
        RCLONE_CONFIG_SB_URL=dav_url(server, dav_vol["name"]),
        RCLONE_CONFIG_SB_VENDOR="other",
        RCLONE_CONFIG_SB_USER="rclone",
        RCLONE_CONFIG_SB_PASS=obscured,
        RCLONE_CONFIG="/dev/null",
    )

    def rc(*args):
        proc = subprocess.run([rclone, *args], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"rclone {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    src, back = tmp_path / "src", tmp_path / "back"
    src.mkdir()
    make_tree(src)
    rc("copy", "--create-empty-src-dirs", str(src), "sb:tree")
    rc("copy", "--create-empty-src-dirs", "sb:tree", str(back))
    assert same_tree(src, back) == []
    # Stored with the sandbox user's ids.
    mnt = volume_mnt(server, dav_vol["id"])
    for p in [mnt / "tree", mnt / "tree/nested/deeper/big.bin", mnt / "tree/empty-dir"]:
        assert (p.stat().st_uid, p.stat().st_gid) == (1000, 1000), p

    # Change the source, sync, and the remote matches it again (deletions included).
    (src / "small.bin").unlink()
    shutil.rmtree(src / "nested" / "deeper" / "deepest")
    (src / "nested" / "new.bin").write_bytes(os.urandom(70_000))
    (src / "text.txt").write_text("changed\n")
    rc("sync", "--create-empty-src-dirs", str(src), "sb:tree")
    rc("check", str(src), "sb:tree")
    shutil.rmtree(back)
    rc("copy", "--create-empty-src-dirs", "sb:tree", str(back))
    assert same_tree(src, back) == []


# ---------------------------------------------------------------------------------------------
# Seed flow: sandboxes and WebDAV share the files
# ---------------------------------------------------------------------------------------------


def test_sandbox_writes_dav_reads_dav_writes_new_sandbox_reads(server, dav_vol, create_sandbox):
    first = create_sandbox(with_volume(dav_vol["id"]))
    code, out = sh(first, "whoami && echo from-sandbox > /workspace/seed.txt && mkdir -p /workspace/proj/src && echo 'print(1)' > /workspace/proj/src/main.py && echo ok")
    assert (code, out.split()) == (0, ["daytona", "ok"]), out
    with dav_client(server, basic=True) as c:
        base = f"/dav/{dav_vol['name']}"
        assert c.get(f"{base}/seed.txt").text == "from-sandbox\n"
        listing = c.request("PROPFIND", f"{base}/proj/src/", headers={"Depth": "1"})
        assert listing.status_code == 207 and "main.py" in listing.text
        assert c.request("MKCOL", f"{base}/from-dav/").status_code == 201
        assert c.put(f"{base}/from-dav/note.txt", content=b"written over webdav\n").status_code in (201, 204)
        # A running sandbox sees it at once.
        assert sh(first, "cat /workspace/from-dav/note.txt")[1] == "written over webdav\n"

    second = create_sandbox(with_volume(dav_vol["name"]))
    code, out = sh(
        second,
        "cat /workspace/from-dav/note.txt && echo appended >> /workspace/from-dav/note.txt && "
        "touch /workspace/from-dav/made-inside && stat -c '%U:%G' /workspace/from-dav /workspace/from-dav/note.txt && whoami",
    )
    assert code == 0, out
    assert out.split() == ["written", "over", "webdav", "daytona:daytona", "daytona:daytona", "daytona"], out
    with dav_client(server) as c:
        assert c.get(f"/dav/{dav_vol['name']}/from-dav/note.txt").text == "written over webdav\nappended\n"


def test_posix_semantics_inside_a_sandbox(dav_vol, create_sandbox):
    sb = create_sandbox(with_volume(dav_vol["id"]))
    script = r"""
import mmap, os, sqlite3
d = '/workspace/posix'
os.makedirs(d, exist_ok=True)
p = d + '/f'
with open(p, 'w') as f: f.write('a')
with open(p, 'a') as f: f.write('b'); f.flush(); os.fsync(f.fileno())
os.rename(p, d + '/g')
with open(d + '/g', 'r+b') as f:
    m = mmap.mmap(f.fileno(), 0); m[0:1] = b'X'; m.flush(); m.close()
db = sqlite3.connect(d + '/db.sqlite'); db.execute('create table t(x)'); db.execute('insert into t values (42)'); db.commit()
print(open(d + '/g').read(), db.execute('select x from t').fetchone()[0])
"""
    code, out = sh(sb, support.python_cmd(script))
    assert (code, out.split()) == (0, ["Xb", "42"]), out


def test_subpath_is_created_inside_the_volume(server, dav_vol, create_sandbox):
    sb = create_sandbox(
        CreateSandboxFromSnapshotParams(
            volumes=[VolumeMount(volume_id=dav_vol["id"], mount_path="/proj", subpath="users/alice")]
        )
    )
    code, out = sh(sb, "echo sub > /proj/file && stat -c %U /proj")
    assert (code, out.strip()) == (0, "daytona"), out
    mnt = volume_mnt(server, dav_vol["id"])
    assert (mnt / "users" / "alice" / "file").read_text() == "sub\n"
    assert (mnt / "users").stat().st_uid == 1000


# ---------------------------------------------------------------------------------------------
# Traversal
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(server, dav_vol, host_secret, module_sandboxes):
    """A sandbox that planted symlinks to host paths (as seen from inside) in the volume."""
    sb = module_sandboxes(with_volume(dav_vol["id"]))
    code, out = sh(
        sb,
        f"cd /workspace && ln -sfn /etc etclink && ln -sfn / rootlink && ln -sfn {host_secret} secretlink && "
        "ln -sfn ../../../../../../../../ uplink && mkfifo fifo && echo planted",
    )
    assert code == 0 and "planted" in out, out
    return sb


def assert_no_host_data(status: int, body: bytes, what: str) -> None:
    text = body.decode("utf-8", "replace")
    assert HOST_SECRET not in text, f"{what}: host secret leaked"
    assert "root:x:0:0" not in text, f"{what}: a passwd file leaked"


def test_dav_traversal_battery(server, dav_vol, planted, host_secret):
    name = dav_vol["name"]
    rel_secret = str(host_secret).lstrip("/")
    up = "/".join([".."] * 12)
    attempts = [
        ("GET", f"/dav/{name}/../../../../{rel_secret}"),
        ("GET", f"/dav/{name}/{up}/etc/passwd"),
        ("GET", f"/dav/{name}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        ("GET", f"/dav/{name}/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd"),
        ("GET", f"/dav/{name}/..%2f..%2f..%2f..%2fetc%2fpasswd"),
        ("GET", f"/dav/{name}/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        ("GET", f"/dav/{name}/.%2e/.%2e/.%2e/etc/passwd"),
        ("GET", f"/dav/{name}%2f..%2f..%2fetc%2fpasswd"),
        ("GET", f"/dav/..%2f..%2f..%2fetc/passwd"),
        ("GET", f"/dav/{name}/etclink/passwd"),
        ("GET", f"/dav/{name}/rootlink/etc/passwd"),
        ("GET", f"/dav/{name}/rootlink/{rel_secret}"),
        ("GET", f"/dav/{name}/secretlink"),
        ("GET", f"/dav/{name}/uplink/etc/passwd"),
        ("GET", f"/dav/{name}/uplink/{rel_secret}"),
        ("GET", f"/dav/{name}/fifo"),
        ("PROPFIND", f"/dav/{name}/rootlink/"),
        ("PROPFIND", f"/dav/{name}/etclink/"),
        ("PROPFIND", f"/dav/{name}/uplink/"),
    ]
    for method, path in attempts:
        status, body = raw_request(server, method, path)
        assert_no_host_data(status, body, f"{method} {path}")
        if method == "GET":
            assert status >= 400, f"{method} {path}: {status}"
        else:
            # Listing a link lists the volume's own view (at most the volume root), never the host's.
            assert b"/etc/" not in body or status >= 400, f"{method} {path}: {body[:300]!r}"
            assert b"passwd" not in body, f"{method} {path}"

    # Writes through the planted links land inside the volume or fail, never on the host.
    with dav_client(server) as c:
        for target in ("rootlink/sandbar-pwned", "uplink/sandbar-pwned", "etclink/sandbar-pwned"):
            c.put(f"/dav/{name}/{target}", content=b"pwned")
        c.request("MKCOL", f"/dav/{name}/uplink/sandbar-pwned-dir/")
        c.request(
            "COPY",
            f"/dav/{name}/secretlink",
            headers={"Destination": f"{server.base_url}/dav/{name}/copied-secret"},
        )
        r = c.get(f"/dav/{name}/copied-secret")
        assert_no_host_data(r.status_code, r.content, "COPY of a link")
        r = c.request(
            "MOVE",
            f"/dav/{name}/seed-nothing",
            headers={"Destination": f"{server.base_url}/dav/{name}/../../../../tmp/sandbar-moved"},
        )
        assert r.status_code >= 400
    for host_path in ("/sandbar-pwned", "/etc/sandbar-pwned", "/sandbar-pwned-dir", "/tmp/sandbar-moved"):
        assert not os.path.exists(host_path), host_path
    assert host_secret.read_text() == HOST_SECRET + "\n"


def test_toolbox_file_api_traversal(server, dav_vol, planted, host_secret):
    sb = planted
    rel_secret = str(host_secret).lstrip("/")
    paths = [
        str(host_secret),
        f"/workspace/../../../../{rel_secret}",
        f"/workspace/secretlink",
        f"/workspace/rootlink/{rel_secret}",
        f"/workspace/uplink/{rel_secret}",
        f"/workspace/{'/'.join(['..'] * 12)}/{rel_secret}",
    ]
    for path in paths:
        try:
            data = sb.fs.download_file(path)
        except DaytonaError:
            continue
        assert HOST_SECRET.encode() not in (data or b""), f"toolbox download of {path} returned the host secret"
    # Raw toolbox calls with encoded dots, through the server's proxy.
    with server.http() as c:
        base = f"{server.base_url}/toolbox/{sb.id}"
        for path in (f"/workspace/%2e%2e/%2e%2e/%2e%2e/{rel_secret}", f"/workspace/..%2f..%2f..%2f{rel_secret}"):
            r = c.get(f"{base}/files/download?path={path}")
            assert HOST_SECRET not in r.text, path
        r = c.get(f"{base}/files", params={"path": "/workspace/rootlink/"})
        assert HOST_SECRET not in r.text
    # Writing through the links stays inside the sandbox.
    for target in ("/workspace/rootlink/tmp/sandbar-toolbox-pwned", "/workspace/uplink/tmp/sandbar-toolbox-pwned"):
        try:
            sb.fs.upload_file(b"x", target)
        except DaytonaError:
            pass
    assert not os.path.exists("/tmp/sandbar-toolbox-pwned")


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_full_volume_is_enospc_inside_and_everything_else_keeps_working(server, daytona, dav_vol):
    small = create_volume(server, f"e2e-small-{RUN}", size_gib=1)
    sb = None
    try:
        sb = daytona.create(with_volume(small["id"]), timeout=120)
        code, out = sh(sb, "dd if=/dev/zero of=/workspace/fill bs=1M 2>&1; echo exit=$?", timeout=300)
        assert "No space left on device" in out and "exit=0" not in out, out
        # The sandbox itself, the server, the host and other volumes are fine.
        assert sh(sb, "echo alive > /tmp/alive && cat /tmp/alive")[1].strip() == "alive"
        with server.http() as c:
            assert c.get("/volumes").status_code == 200
        host_file = server.data_dir.parent / f"host-write-{RUN}"
        host_file.write_bytes(os.urandom(1 << 20))
        host_file.unlink()
        with dav_client(server) as c:
            assert c.put(f"/dav/{dav_vol['name']}/after-full.bin", content=os.urandom(1 << 20)).status_code in (201, 204)
            r = c.put(f"/dav/{small['name']}/more.bin", content=os.urandom(8 << 20))
            assert r.status_code == 507, r.status_code
        # Freeing space makes the volume writable again.
        code, out = sh(sb, "rm /workspace/fill && echo again > /workspace/again && cat /workspace/again")
        assert (code, out.strip()) == (0, "again"), out
        with dav_client(server) as c:
            assert c.put(f"/dav/{small['name']}/more.bin", content=os.urandom(1 << 20)).status_code in (201, 204)
    finally:
        if sb is not None:
            daytona.delete(sb, timeout=60)
        delete_volume(server, small["id"])


def test_volume_survives_restart_and_crash_with_a_running_sandbox(private_server):
    srv = private_server
    v = create_volume(srv, f"e2e-restart-{RUN}")
    client = support.make_client(srv)
    sb = client.create(with_volume(v["id"]), timeout=120)
    try:
        assert sh(sb, "echo before > /workspace/before.txt")[0] == 0
        srv.restart()  # graceful: the host mount is released, the sandbox keeps its own
        with dav_client(srv) as c:
            assert c.get(f"/dav/{v['name']}/before.txt").text == "before\n"
            assert c.put(f"/dav/{v['name']}/after-restart.txt", content=b"restart\n").status_code in (201, 204)
        # Same file system on both sides (the loop device was reused, not attached twice).
        assert sh(sb, "cat /workspace/after-restart.txt")[1] == "restart\n"
        assert sh(sb, "echo inside > /workspace/inside.txt")[0] == 0
        srv.restart(sig=9)
        with dav_client(srv) as c:
            assert c.get(f"/dav/{v['name']}/inside.txt").text == "inside\n"
        client.delete(sb, timeout=60)
        with dav_client(srv) as c:
            assert c.get(f"/dav/{v['name']}/before.txt").text == "before\n"
    finally:
        try:
            client.delete(sb, timeout=60)
        except DaytonaError:
            pass
        delete_volume(srv, v["id"])
    assert not (srv.data_dir / "volumes" / v["id"]).exists(), "deleting a volume removes its image"


# ---------------------------------------------------------------------------------------------
# Throughput (printed, not asserted)
# ---------------------------------------------------------------------------------------------


@pytest.mark.perf
def test_dav_throughput_1gib(server, dav_vol):
    size = 1 << 30
    chunk = os.urandom(1 << 20)
    peak = {"rss": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss = support.proc_status(server.pid).get("VmRSS", "0 kB").split()[0]
            peak["rss"] = max(peak["rss"], int(rss))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    base_rss = int(support.proc_status(server.pid).get("VmRSS", "0 kB").split()[0])
    sampler.start()
    try:
        url = f"/dav/{dav_vol['name']}/big.bin"
        with dav_client(server) as c:
            t0 = time.monotonic()
            r = c.put(url, content=(chunk for _ in range(size // len(chunk))))
            up = time.monotonic() - t0
            assert r.status_code in (201, 204), r.status_code
            t0 = time.monotonic()
            got = 0
            with c.stream("GET", url) as resp:
                assert resp.status_code == 200
                for part in resp.iter_bytes(1 << 20):
                    got += len(part)
            down = time.monotonic() - t0
            assert got == size
            c.delete(url)
    finally:
        stop.set()
        sampler.join()
    line = (
        f"webdav 1 GiB: upload {size / up / 2**20:.0f} MiB/s ({up:.1f} s), "
        f"download {size / down / 2**20:.0f} MiB/s ({down:.1f} s); server RSS {base_rss // 1024} MiB before, "
        f"peak {peak['rss'] // 1024} MiB during"
    )
    support.PERF_LINES.append(line)
    print(line)
