"""The Socket.IO event stream (`/api/socket.io/`, contract §1.1): a python-socketio client with an
API key in the CONNECT packet receives `sandbox.created` and `sandbox.state.updated` for its own
organization's sandboxes, with the Sandbox JSON the REST API returns; another organization's client
receives nothing; a wrong key is refused; a polling request gets a 400 at once; and the official SDK
with events on completes create/stop/delete without server errors."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
import socketio
from daytona import CreateSandboxFromSnapshotParams

import support
from support import make_client, state_of

EVENTS = ("sandbox.created", "sandbox.state.updated")
# Fields of the Sandbox JSON that may move between an event and a later REST answer.
VOLATILE = {"lastActivityAt"}


class Listener:
    """A python-socketio client recording every sandbox event it receives."""

    def __init__(self, srv: support.SandbarServer, token: str | None):
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, dict]] = []
        self.cond = threading.Condition()
        for name in EVENTS:
            self.sio.on(name, self._recorder(name))
        self.srv = srv
        self.token = token

    def _recorder(self, name: str):
        def record(data):
            with self.cond:
                self.events.append((name, data))
                self.cond.notify_all()

        return record

    def connect(self) -> "Listener":
        self.sio.connect(
            f"{self.srv.base_url}?source=sdk-python&sdkVersion=e2e",
            socketio_path="/api/socket.io/",
            auth={"token": self.token} if self.token is not None else None,
            transports=["websocket"],
            wait_timeout=5,
        )
        return self

    def close(self) -> None:
        self.sio.disconnect()

    def wait_for(self, predicate, timeout: float = 30, what: str = "event") -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    if predicate(*event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout}s; received: {self.summary()}")
                self.cond.wait(left)

    def for_sandbox(self, sid: str) -> list[tuple[str, dict]]:
        with self.cond:
            return [(n, d) for n, d in self.events if (d.get("sandbox") or d).get("id") == sid]

    def summary(self) -> list[str]:
        return [
            f"{n}:{(d.get('sandbox') or d).get('id')}:{d.get('oldState', '')}->{d.get('newState', d.get('state'))}"
            for n, d in self.events
        ]


def state_update(sid: str, new_state: str):
    return lambda name, data: (
        name == "sandbox.state.updated" and data["sandbox"]["id"] == sid and data["newState"] == new_state
    )


def same_sandbox(event_sb: dict, rest_sb: dict) -> None:
    assert set(event_sb) == set(rest_sb), set(event_sb) ^ set(rest_sb)
    diff = {k: (event_sb[k], rest_sb[k]) for k in rest_sb if k not in VOLATILE and event_sb[k] != rest_sb[k]}
    assert not diff, diff


@pytest.fixture(scope="module")
def other_key(server):
    return server.create_key(org="other", name=f"e2e-events-{support.short_id()}")


@pytest.mark.lifecycle
def test_rest_lifecycle_events_reach_only_the_organization(server, other_key):
    mine = Listener(server, server.api_key).connect()
    theirs = Listener(server, other_key).connect()
    sid = None
    try:
        assert mine.sio.connected and theirs.sio.connected
        with server.http() as api:
            r = api.post("/sandbox", json={"labels": {"e2e": "events"}, "env": {}, "volumes": []})
            assert r.status_code == 200, r.text
            created = r.json()
            sid = created["id"]
            assert created["state"] == "started", created

            _, first = mine.wait_for(lambda n, d: n == "sandbox.created" and d.get("id") == sid, what="sandbox.created")
            assert first["state"] == "creating" and first["organizationId"] == created["organizationId"], first
            assert set(first) == set(created), set(first) ^ set(created)
            _, started = mine.wait_for(state_update(sid, "started"), what="started")
            assert started["oldState"] == "creating" and started["sandbox"]["state"] == "started", started
            same_sandbox(started["sandbox"], created)

            r = api.post(f"/sandbox/{sid}/stop")
            assert r.status_code == 200, r.text
            stopped_rest = r.json()
            assert stopped_rest["state"] == "stopped"
            _, stopped = mine.wait_for(state_update(sid, "stopped"), what="stopped")
            assert stopped["oldState"] == "stopping", stopped
            same_sandbox(stopped["sandbox"], stopped_rest)

            r = api.delete(f"/sandbox/{sid}")
            assert r.status_code == 200, r.text
            _, gone = mine.wait_for(state_update(sid, "destroyed"), what="destroyed")
            same_sandbox(gone["sandbox"], r.json())
            sid = None

        transitions = [
            (n, d.get("oldState"), d.get("newState")) for n, d in mine.for_sandbox(created["id"])
        ]
        assert transitions == [
            ("sandbox.created", None, None),
            ("sandbox.state.updated", "creating", "started"),
            ("sandbox.state.updated", "started", "stopping"),
            ("sandbox.state.updated", "stopping", "stopped"),
            ("sandbox.state.updated", "stopped", "destroying"),
            ("sandbox.state.updated", "destroying", "destroyed"),
        ], transitions
        time.sleep(0.5)
        assert theirs.events == [], theirs.summary()
        assert theirs.sio.connected
    finally:
        mine.close()
        theirs.close()
        if sid:
            with server.http() as api:
                api.delete(f"/sandbox/{sid}")


@pytest.mark.lifecycle
def test_other_organization_sees_its_own_events(server, other_key):
    theirs = Listener(server, other_key).connect()
    mine = Listener(server, server.api_key).connect()
    try:
        with server.http(other_key) as api:
            r = api.post("/sandbox", json={"labels": {}, "env": {}, "volumes": []})
            assert r.status_code == 200, r.text
            sid = r.json()["id"]
            theirs.wait_for(state_update(sid, "started"), what="started (other org)")
            assert api.delete(f"/sandbox/{sid}").status_code == 200
            theirs.wait_for(state_update(sid, "destroyed"), what="destroyed (other org)")
        time.sleep(0.5)
        assert mine.for_sandbox(sid) == [], mine.summary()
    finally:
        theirs.close()
        mine.close()


@pytest.mark.lifecycle
@pytest.mark.parametrize("token", ["sb_thisisnotakey0000000000", "", None])
def test_wrong_or_missing_key_is_refused(server, token):
    listener = Listener(server, token)
    started = time.monotonic()
    with pytest.raises(socketio.exceptions.ConnectionError) as ei:
        listener.connect()
    assert time.monotonic() - started < 5
    assert not listener.sio.connected
    listener.close()
    # python-socketio reports the CONNECT_ERROR message.
    assert "Unauthorized" in str(ei.value) or "failed to connect" in str(ei.value), ei.value


@pytest.mark.lifecycle
def test_polling_and_plain_requests_get_400_at_once(server):
    for query in ("EIO=4&transport=polling", "EIO=4&transport=websocket", "EIO=3&transport=websocket"):
        started = time.monotonic()
        r = httpx.get(f"{server.api_url}/socket.io/?{query}", timeout=5)
        assert time.monotonic() - started < 2
        assert r.status_code == 400, (query, r.status_code, r.text)
        body = r.json()
        assert body["statusCode"] == 400 and body["message"], body


ANSI = re.compile(r"\x1b\[[0-9;]*m")
REQUEST_LINE = re.compile(r"method=(\w+) path=(\S+?)\}.*\bstatus=(\d{3})")


@pytest.mark.lifecycle
def test_sdk_with_events_creates_and_stops(server):
    mark = len(server.lines)
    client = make_client(server)
    dispatcher = client._event_dispatcher
    assert dispatcher is not None, "the SDK runs without its event dispatcher"
    support.wait_until(lambda: dispatcher.is_connected, 10, what="SDK Socket.IO connection")
    sb = None
    try:
        t0 = time.monotonic()
        sb = client.create(CreateSandboxFromSnapshotParams(labels={"e2e": "events-sdk"}), timeout=120)
        t_create = time.monotonic() - t0
        assert state_of(sb) == "started"
        t0 = time.monotonic()
        sb.stop(timeout=60)
        t_stop = time.monotonic() - t0
        assert state_of(sb) == "stopped"
        t0 = time.monotonic()
        sb.start(timeout=60)
        t_start = time.monotonic() - t0
        assert state_of(sb) == "started"
        t0 = time.monotonic()
        client.delete(sb, timeout=60)
        t_delete = time.monotonic() - t0
        sb = None
        assert dispatcher.is_connected and not dispatcher.is_failed, dispatcher.fail_error
        line = (
            f"SDK with Socket.IO events: create {t_create * 1e3:.0f} ms, stop {t_stop * 1e3:.0f} ms, "
            f"start {t_start * 1e3:.0f} ms, delete {t_delete * 1e3:.0f} ms"
        )
        print(line)
        support.PERF_LINES.append(line)
    finally:
        if sb is not None:
            client.delete(sb, timeout=60)
        dispatcher.disconnect()

    lines = [ANSI.sub("", text) for text in server.lines[mark:]]
    errors = []
    requests = []
    for text in lines:
        m = REQUEST_LINE.search(text)
        if m:
            requests.append(m.groups())
            if m.group(3)[0] in "45":
                errors.append(text)
    assert ("POST", "/api/sandbox", "200") in requests, requests
    assert not errors, "\n".join(errors)
    upgrades = [t for t in lines if "path=/api/socket.io" in t and "status=101" in t]
    assert upgrades, "no Socket.IO upgrade in the server log"
