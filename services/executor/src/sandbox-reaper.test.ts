// Orphan reaping at start-up: labelled sandboxes that are stopped, or whose owner process on
// this host is gone, are removed; a live executor's sandboxes are left alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { SANDBOX_HOST_LABEL, SANDBOX_LABEL, SANDBOX_OWNER_LABEL, SANDBOX_PID_LABEL, reapOrphanSandboxes } from "./docker-sandbox.js";
import { SANDBOX_IMAGE } from "./sandbox-image.js";
import { requireDockerAndImage } from "./test-support.js";

/** A pid that is certainly not running: above the kernel's pid_max. */
const DEAD_PID = 4_194_304 + 1;

test("orphan sandboxes are reaped, live ones kept", { timeout: 60_000 }, async () => {
  const docker = await requireDockerAndImage();
  const owner = `reaper-test-${process.pid}`;
  const make = async (pid: number, start: boolean) => {
    const c = await docker.createContainer({
      Image: SANDBOX_IMAGE,
      Cmd: ["/usr/bin/python3", "-c", "import time; time.sleep(120)"],
      Labels: { [SANDBOX_LABEL]: "1", [SANDBOX_OWNER_LABEL]: owner, [SANDBOX_HOST_LABEL]: hostname(), [SANDBOX_PID_LABEL]: String(pid) },
      HostConfig: { NetworkMode: "none" },
    });
    if (start) await c.start();
    return c.id;
  };
  const stopped = await make(DEAD_PID, false);
  const starting = await make(process.pid, false);
  const deadOwner = await make(DEAD_PID, true);
  const live = await make(process.pid, true);
  try {
    await reapOrphanSandboxes(docker);
    const exited = await make(process.pid, true);
    await docker.getContainer(exited).kill();
    await docker.getContainer(exited).wait();
    await reapOrphanSandboxes(docker);
    const left = (await docker.listContainers({ all: true, filters: { label: [`${SANDBOX_OWNER_LABEL}=${owner}`] } })).map((c) => c.Id);
    assert.ok(!left.includes(stopped), "a never-started sandbox of a dead executor is reaped");
    assert.ok(left.includes(starting), "a sandbox another executor is starting right now is kept");
    assert.ok(!left.includes(exited), "an exited sandbox is reaped");
    assert.ok(!left.includes(deadOwner), "a sandbox of a dead executor is reaped");
    assert.ok(left.includes(live), "a live executor's sandbox is kept");
  } finally {
    for (const id of [stopped, starting, deadOwner, live])
      await docker
        .getContainer(id)
        .remove({ force: true })
        .catch(() => undefined);
  }
});
