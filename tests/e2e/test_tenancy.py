"""API keys and organizations: wrong keys are refused, another organization sees nothing of the
first one's sandboxes and volumes (neither through the API nor through the toolbox), and the
`sandbar keys` CLI creates, lists and revokes keys."""

from __future__ import annotations

import httpx
import pytest
from daytona import (
    CreateSandboxFromSnapshotParams,
    DaytonaAuthenticationError,
    DaytonaError,
    DaytonaNotFoundError,
    ListSandboxesQuery,
    VolumeMount,
)

import support
from support import make_client, sh, state_of


@pytest.fixture(scope="module")
def other_key(server):
    """A key of a second organization, created with the CLI while the server runs."""
    return server.create_key(org="other", name=f"e2e-other-{support.short_id()}")


@pytest.fixture(scope="module")
def tenant_sb(module_sandboxes):
    run = support.short_id()
    return module_sandboxes(
        CreateSandboxFromSnapshotParams(name=f"e2e-tenant-{run}", labels={"tenancy": run})
    )


@pytest.mark.tenancy
def test_wrong_api_key_is_rejected_with_401(server):
    bad = make_client(server, key="sb_thisisnotakey0000000000")
    with pytest.raises(DaytonaAuthenticationError) as ei:
        bad.get("any-sandbox")
    assert ei.value.status_code == 401
    with pytest.raises(DaytonaAuthenticationError):
        list(bad.list())

    for headers in ({"Authorization": "Bearer sb_thisisnotakey0000000000"}, {}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        r = httpx.get(f"{server.api_url}/sandbox", headers=headers, timeout=10)
        assert r.status_code == 401, f"{headers}: {r.status_code} {r.text[:200]}"
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        body = r.json()
        assert body.get("statusCode") == 401 and isinstance(body.get("message"), str) and body["message"], body


@pytest.mark.tenancy
def test_toolbox_refuses_missing_wrong_and_foreign_keys(server, tenant_sb, other_key):
    url = f"{tenant_sb.toolbox_proxy_url}/{tenant_sb.id}/process/execute"
    marker = f"/tmp/e2e-tenancy-{support.short_id()}"
    for label, key in (("no key", None), ("wrong key", "sb_thisisnotakey0000000000"), ("other org", other_key)):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.post(url, json={"command": f"touch {marker}"}, headers=headers, timeout=30)
        assert r.status_code in (401, 403, 404), f"toolbox exec with {label}: {r.status_code} {r.text[:200]}"
        r = httpx.post(
            f"{tenant_sb.toolbox_proxy_url}/{tenant_sb.id}/files/bulk-download",
            json={"paths": ["/etc/passwd"]},
            headers=headers,
            timeout=30,
        )
        assert r.status_code in (401, 403, 404), f"toolbox download with {label}: {r.status_code}"
    r = httpx.post(url, json={"command": "echo own-key"}, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30)
    assert r.status_code == 200 and "own-key" in r.json()["result"], f"own key: {r.status_code} {r.text[:200]}"
    code, out = sh(tenant_sb, f"test -e {marker} && echo RAN || echo clean")
    assert out.strip() == "clean", "a command sent with a missing, wrong or foreign key ran in the sandbox"


@pytest.mark.tenancy
def test_other_organization_cannot_see_or_touch_sandbox(server, daytona, tenant_sb, other_key):
    other = make_client(server, key=other_key)
    with pytest.raises(DaytonaNotFoundError):
        other.get(tenant_sb.id)
    with pytest.raises(DaytonaNotFoundError):
        other.get(tenant_sb.name)
    assert tenant_sb.id not in [s.id for s in other.list()]
    assert not list(other.list(ListSandboxesQuery(labels=tenant_sb.labels)))
    with server.http(other_key) as c:
        for method, path in (
            ("POST", f"/sandbox/{tenant_sb.id}/stop?force=false"),
            ("PUT", f"/sandbox/{tenant_sb.id}/labels"),
            ("GET", f"/sandbox/{tenant_sb.id}/ports/8080/preview-url"),
            ("DELETE", f"/sandbox/{tenant_sb.id}"),
        ):
            r = c.request(method, path, json={"labels": {"pwned": "1"}} if method == "PUT" else None)
            assert r.status_code in (403, 404), f"{method} {path} with another org's key: {r.status_code}"
    still = daytona.get(tenant_sb.id)
    assert state_of(still) == "started" and "pwned" not in still.labels


@pytest.mark.tenancy
def test_first_organization_cannot_see_the_others_sandbox(server, daytona, tenant_sb, other_key):
    other = make_client(server, key=other_key)
    theirs = other.create(timeout=120)
    try:
        assert theirs.organization_id != tenant_sb.organization_id
        with pytest.raises(DaytonaNotFoundError):
            daytona.get(theirs.id)
        assert theirs.id not in [s.id for s in daytona.list()]
    finally:
        other.delete(theirs, timeout=60)


@pytest.mark.tenancy
@pytest.mark.volumes
def test_other_organization_cannot_use_the_first_ones_volume(server, daytona, other_key):
    name = f"e2e-tenant-vol-{support.short_id()}"
    vol = daytona.volume.get(name, create=True)
    other = make_client(server, key=other_key)
    try:
        with pytest.raises(DaytonaNotFoundError):
            other.volume.get(name)
        assert vol.id not in [v.id for v in other.volume.list()]
        for ref in (vol.id, vol.name):
            with pytest.raises(DaytonaError):
                sb = other.create(
                    CreateSandboxFromSnapshotParams(volumes=[VolumeMount(volume_id=ref, mount_path="/workspace")]),
                    timeout=60,
                )
                other.delete(sb)  # only reached if the create wrongly succeeded
    finally:
        daytona.volume.delete(vol)


# ---------------------------------------------------------------------------------------------
# The keys CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.keys
def test_created_key_works_and_revoked_key_is_rejected(server):
    name = f"e2e-revoke-{support.short_id()}"
    key = server.create_key(name=name)
    assert key.startswith("sb_")
    with server.http(key) as c:
        r = c.get("/sandbox")
        assert r.status_code == 200, f"a freshly created key is refused: {r.status_code} {r.text[:200]}"
        support.revoke_key(server.data_dir, key, name)
        support.wait_until(lambda: c.get("/sandbox").status_code == 401, 5, 0.2, "the revoked key to be refused")
    with server.http() as c:
        assert c.get("/sandbox").status_code == 200, "revoking one key broke the SANDBAR_API_KEY key"


@pytest.mark.keys
def test_keys_list_names_keys_without_printing_secrets(server):
    name = f"e2e-list-{support.short_id()}"
    key = server.create_key(name=name)
    listing = support.run_cli("keys", "list", "--data-dir", str(server.data_dir)).stdout
    assert name in listing, f"`keys list` does not show key {name}:\n{listing}"
    assert key not in listing, "`keys list` prints the full secret key"
