"""Fixtures of the end-to-end suite: a real `sandbar serve` (temp data dir, random port), Daytona
SDK clients against it, sandbox factories that clean up, private servers for tests that restart
or kill the server, and a per-feature result table printed at the end of the run."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from daytona import Daytona  # noqa: E402

FEATURES = (
    "isolation",
    "lifecycle",
    "crash",
    "tenancy",
    "keys",
    "snapshots",
    "seed",
    "volumes",
    "files",
    "sessions",
    "preview",
    "async_sdk",
    "cli",
    "perf",
    "last",
)
_RESULTS: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
_LOG_MARK = pytest.StashKey[dict]()
_LEFTOVERS: list[str] = []


# ---------------------------------------------------------------------------------------------
# Session set-up
# ---------------------------------------------------------------------------------------------


def pytest_configure(config):
    # The SDK reads DAYTONA_* from the environment (and from .env files): keep the suite's
    # clients exactly as configured here.
    for k in list(os.environ):
        if k.startswith("DAYTONA_"):
            del os.environ[k]


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: 1 if item.get_closest_marker("last") else 0)


@pytest.fixture(scope="session", autouse=True)
def _preconditions():
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.exit("the end-to-end suite needs Linux and root (it creates real sandboxes)", returncode=2)


@pytest.fixture(scope="session")
def e2e_root():
    base = os.environ.get("SANDBAR_E2E_TMP", "/var/tmp")
    root = Path(tempfile.mkdtemp(prefix="sandbar-e2e-", dir=base))
    root.chmod(0o755)
    print(f"\nsandbar e2e working directory: {root}")
    yield root
    if not support.KEEP_DATA and not _LEFTOVERS:
        shutil.rmtree(root, ignore_errors=True)


class ServerFactory:
    """Starts `sandbar serve` processes, each with its own data dir, and cleans up after them."""

    def __init__(self, root: Path):
        self.root = root
        self.servers: list[support.SandbarServer] = []

    def new(self, label: str, start: bool = True) -> support.SandbarServer:
        base = self.root / f"{label}-{support.short_id()}"
        base.mkdir(parents=True)
        srv = support.SandbarServer(
            data_dir=base / "data",
            api_key=f"sb_e2e{support.short_id()}{support.short_id()}",
            log_path=base / "server.log",
        )
        self.servers.append(srv)
        if start:
            srv.start()
        return srv

    def shutdown(self, srv: support.SandbarServer) -> list[str]:
        """Deletes every sandbox through the API, stops the server, and reports (then removes)
        whatever the host still holds of them."""
        problems: list[str] = []
        ids: set[str] = set()
        with contextlib.suppress(Exception):
            if not srv.running():
                srv.start()
            ids.update(srv.delete_all_sandboxes(srv.all_keys))
        ids.update(srv.sandbox_ids_on_disk())
        deadline = time.monotonic() + 20
        for sid in sorted(ids):
            while support.leak_report(sid, srv.data_dir) and time.monotonic() < deadline:
                time.sleep(0.2)
        with contextlib.suppress(Exception):
            srv.stop()
        for sid in sorted(ids):
            leaks = support.leak_report(sid, srv.data_dir)
            if leaks:
                problems.append(f"{srv.data_dir}: sandbox {sid}: " + "; ".join(leaks))
                support.force_cleanup(sid, srv.data_dir)
        for target in support.host_mount_targets(str(srv.data_dir)):
            problems.append(f"{srv.data_dir}: host mount left after the server stopped: {target}")
        support.unmount_under(srv.data_dir)
        if srv in support.SERVERS:
            support.SERVERS.remove(srv)
        if not support.KEEP_DATA:
            shutil.rmtree(srv.data_dir, ignore_errors=True)
        return problems

    def shutdown_all(self):
        for srv in list(self.servers):
            _LEFTOVERS.extend(self.shutdown(srv))
        self.servers.clear()


@pytest.fixture(scope="session")
def server_factory(e2e_root):
    support.require_binary()
    factory = ServerFactory(e2e_root)
    yield factory
    factory.shutdown_all()


@pytest.fixture(scope="session")
def server(server_factory) -> support.SandbarServer:
    """The shared server of the session (default organization key in SANDBAR_API_KEY)."""
    try:
        return server_factory.new("main")
    except support.E2EError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def private_server(server_factory, request):
    """A server of the test's own, for tests that restart or kill it."""
    label = "private-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    try:
        srv = server_factory.new(label)
    except support.E2EError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield srv
    problems = server_factory.shutdown(srv)
    server_factory.servers.remove(srv)
    if problems:
        _LEFTOVERS.extend(problems)
        pytest.fail("host state left behind after deleting every sandbox and stopping the server:\n  "
                    + "\n  ".join(problems), pytrace=False)


make_client = support.make_client


@pytest.fixture(scope="session")
def daytona(server) -> Daytona:
    return make_client(server)


class SandboxTracker:
    """Creates sandboxes and deletes them when the owning fixture ends."""

    def __init__(self, client: Daytona):
        self.client = client
        self.made: list[tuple[Daytona, object]] = []

    def __call__(self, params=None, client: Daytona | None = None, timeout: float = 120):
        c = client or self.client
        sb = c.create(params, timeout=timeout)
        self.made.append((c, sb))
        return sb

    def cleanup(self):
        for c, sb in reversed(self.made):
            with contextlib.suppress(Exception):  # already deleted by the test, or server gone
                c.delete(sb, timeout=60)
        self.made.clear()


@pytest.fixture
def create_sandbox(daytona):
    """`create_sandbox(params=None, client=None, timeout=120)` → started Sandbox, deleted afterwards."""
    tracker = SandboxTracker(daytona)
    yield tracker
    tracker.cleanup()


@pytest.fixture(scope="module")
def module_sandboxes(daytona):
    """Like create_sandbox, for module-scoped fixtures."""
    tracker = SandboxTracker(daytona)
    yield tracker
    tracker.cleanup()


# ---------------------------------------------------------------------------------------------
# Reporting: server logs on failure, per-feature table, measurements
# ---------------------------------------------------------------------------------------------


def pytest_runtest_setup(item):
    item.stash[_LOG_MARK] = {id(s): len(s.lines) for s in support.SERVERS}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        marks = item.stash.get(_LOG_MARK, {})
        for srv in support.SERVERS:
            text = srv.tail(120, marks.get(id(srv), 0))
            if text:
                rep.sections.append((f"sandbar server output ({srv.data_dir.parent.name})", text))


def _feature_of(keywords) -> str:
    for f in FEATURES:
        if f in keywords:
            return f
    return "other"


def pytest_runtest_logreport(report):
    feature = _feature_of(report.keywords)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        _RESULTS[feature][outcome].append(report.nodeid.split("::", 1)[-1])
    elif report.when == "teardown" and report.failed:
        _RESULTS[feature]["error"].append(report.nodeid.split("::", 1)[-1] + " (teardown)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    if _RESULTS:
        tr.section("sandbar e2e: results by feature")
        for feature in (*FEATURES, "other"):
            if feature not in _RESULTS:
                continue
            r = _RESULTS[feature]
            counts = ", ".join(f"{len(r[k])} {k}" for k in ("passed", "failed", "error", "skipped") if r.get(k))
            tr.write_line(f"{feature:>10}: {counts}")
            for k in ("failed", "error"):
                for name in r.get(k, []):
                    tr.write_line(f"{'':>12}{k.upper()}: {name}")
    if support.PERF_LINES:
        tr.section("sandbar e2e: measurements (not asserted)")
        for line in support.PERF_LINES:
            tr.write_line(line)
    if _LEFTOVERS:
        tr.section("sandbar e2e: host state left behind (removed by force)")
        for line in _LEFTOVERS:
            tr.write_line(line)
