"""Runs last (marker `last`): delete every sandbox of the shared server, through the API, for
every organization, and check the host holds nothing of any of them."""

from __future__ import annotations

import pytest

import support


@pytest.mark.last
def test_no_host_state_left_after_deleting_every_sandbox(server):
    ids = set(server.delete_all_sandboxes(server.all_keys)) | set(server.sandbox_ids_on_disk())
    problems = []
    for sid in sorted(ids):
        try:
            support.assert_no_leaks(sid, server.data_dir, timeout=30)
        except AssertionError as exc:
            problems.append(str(exc))
    for key in server.all_keys:
        with server.http(key) as c:
            r = c.get("/sandbox")
            if r.status_code == 200:
                left = [i["id"] for i in r.json().get("items", []) if i.get("state") not in ("destroyed",)]
                if left:
                    problems.append(f"still listed after deleting everything: {left}")
    assert not problems, "\n".join(problems)
