"""One pass of the seed workflow through the AsyncDaytona client (X-Daytona-Source:
sdk-python-async): volume, create, exec, files, list by labels, stop/start, delete."""

from __future__ import annotations

import asyncio
import os

import pytest
from daytona import (
    AsyncDaytona,
    CreateSandboxFromSnapshotParams,
    DaytonaConfig,
    DaytonaError,
    DaytonaFileNotFoundError,
    DaytonaNotFoundError,
    ListSandboxesQuery,
    VolumeMount,
)

import support
from support import state_of

pytestmark = pytest.mark.async_sdk


def test_async_client_workflow(server):
    run = support.short_id()

    async def flow():
        async with AsyncDaytona(DaytonaConfig(api_key=server.api_key, api_url=server.api_url)) as d:
            vol = await d.volume.get(f"e2e-async-vol-{run}", create=True)
            assert str(getattr(vol.state, "value", vol.state)) == "ready"
            sb = await d.create(
                CreateSandboxFromSnapshotParams(
                    labels={"suite": "e2e-async", "run": run},
                    env_vars={"FOO": "async"},
                    volumes=[VolumeMount(volume_id=vol.id, mount_path="/workspace")],
                ),
                timeout=120,
            )
            try:
                assert state_of(sb) == "started"
                r = await sb.process.exec("echo $FOO && exit 4")
                assert (r.exit_code, r.result.strip()) == (4, "async")
                blob = os.urandom(256 << 10)
                await sb.fs.upload_file(blob, "/workspace/blob.bin")
                assert await sb.fs.download_file("/workspace/blob.bin") == blob
                assert "blob.bin" in [f.name for f in await sb.fs.list_files("/workspace")]
                await sb.fs.delete_file("/workspace/blob.bin")
                with pytest.raises(DaytonaFileNotFoundError):
                    await sb.fs.download_file("/workspace/blob.bin")
                ids = [s.id async for s in d.list(ListSandboxesQuery(labels={"run": run}, limit=1))]
                assert ids == [sb.id]
                await sb.process.exec("echo kept > ~/kept.txt")
                await sb.stop()
                assert state_of(sb) == "stopped"
                await sb.start()
                assert state_of(sb) == "started"
                assert (await sb.process.exec("cat ~/kept.txt")).result.strip() == "kept"
            finally:
                await d.delete(sb, timeout=60, wait=True)
            try:
                got = await d.get(sb.id)
                assert state_of(got) == "destroyed"
            except DaytonaNotFoundError:
                pass
            with pytest.raises(DaytonaNotFoundError):
                await d.get("does-not-exist")
            try:
                await d.volume.delete(vol)
            except DaytonaError:
                pass

    asyncio.run(flow())
