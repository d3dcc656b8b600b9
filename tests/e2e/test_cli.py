"""The `sandbar serve` command line: configuration through the environment, and a clean stop."""

from __future__ import annotations

import signal

import pytest

import support

pytestmark = pytest.mark.cli


def test_serve_takes_listen_and_data_dir_from_the_environment(server_factory):
    srv = server_factory.new("env-config", start=False)
    srv.config_by_env = True
    srv.start()
    try:
        with srv.http() as c:
            r = c.get("/sandbox")
            assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
        assert srv.data_dir.is_dir() and any(srv.data_dir.iterdir()), "SANDBAR_DATA_DIR was not used"
        code = srv.stop(signal.SIGTERM, timeout=30)
        assert code in (0, -signal.SIGTERM), f"sandbar serve exited with {code} on SIGTERM"
    finally:
        server_factory.shutdown(srv)
        server_factory.servers.remove(srv)


def test_serve_refuses_a_port_in_use(server, server_factory):
    srv = server_factory.new("port-in-use", start=False)
    srv.port = server.port
    with pytest.raises(support.E2EError, match="exited with status"):
        srv.start()
    server_factory.servers.remove(srv)
