import assert from "node:assert/strict";
import { test } from "node:test";

import {
  type ResourceEntry,
  failureText,
  groupResources,
  initialSpec,
  kernelStatusFrom,
  keptText,
  listingFrom,
  placeChosen,
  progressText,
  resourceStateWords,
  serverProgressFrom,
  specLabel,
  statusText,
} from "../src/kernelwords";

const python = { name: "python3", display_name: "Python 3 (ipykernel)", language: "python" };
const julia = { name: "julia", display_name: "julia", language: "julia" };

function server(name: string, state: ResourceEntry["state"], extra: Partial<ResourceEntry> = {}): ResourceEntry {
  const ready = state === "ready";
  return {
    resource: `server:${name}`,
    kind: "server",
    server: name,
    label: name ? `server '${name}'` : "your default server",
    state,
    kernelspecs: ready ? [python] : null,
    default_kernel: ready ? "python3" : null,
    ...extra,
  };
}

const local: ResourceEntry = { resource: "local", kind: "local", label: "the service (not isolated)", state: "ready", kernelspecs: [julia, python], default_kernel: "python3" };
const gateway: ResourceEntry = { resource: "gateway", kind: "gateway", label: "the kernel gateway", state: "ready", kernelspecs: [python], default_kernel: "python3" };

test("the kernel status in words", () => {
  const s = kernelStatusFrom({ type: "kernel", state: "idle", kernel_name: "python3", kernel_mode: "shared", resource: "server:", where: "on alice's server", kept: [] });
  assert.equal(statusText(s), "python3 · on alice's server · idle · shared");
  const none = kernelStatusFrom({ state: "shutdown", kernel_name: "python3", kernel_mode: "per-user", where: "on the service (not isolated)" });
  assert.equal(statusText(none), "python3 · on the service (not isolated) · not running · per-user");
  // a message missing fields still reads
  assert.equal(statusText(kernelStatusFrom({})), "kernel · unknown · shared");
  assert.equal(placeChosen(s), true);
  assert.equal(placeChosen({ where: "nowhere yet: alice must choose a server for it" }), false);
  assert.deepEqual(kernelStatusFrom({ kept: [{ resource: "local", kernel_name: "julia", state: "idle", busy: 1 }] }).kept, [{ resource: "local", kernel_name: "julia", state: "idle", busy: false }]);
});

test("resources are grouped: default server, named servers running first, gateway, the service", () => {
  const groups = groupResources([local, server("zeta", "stopped"), gateway, server("gpu", "ready"), server("", "stopped"), server("alpha", "stopped")]);
  assert.deepEqual(
    groups.map((g) => [g.title, g.entries.map((e) => e.resource)]),
    [
      ["Your server", ["server:"]],
      ["Your named servers", ["server:gpu", "server:alpha", "server:zeta"]],
      ["The kernel gateway", ["gateway"]],
      ["This service", ["local"]],
    ],
  );
  assert.deepEqual(groupResources([local]).map((g) => g.title), ["This service"]);
});

test("resource states and kernelspecs in words", () => {
  assert.equal(resourceStateWords(server("", "ready")), "running");
  assert.equal(resourceStateWords(local), "ready");
  assert.equal(resourceStateWords(server("", "pending", { pending: "spawn" })), "starting…");
  assert.equal(resourceStateWords(server("", "pending", { pending: "stop" })), "stopping…");
  assert.equal(resourceStateWords(server("", "stopped")), "stopped");
  assert.equal(specLabel(python), "Python 3 (ipykernel) (python3)");
  assert.equal(specLabel(julia), "julia");
});

test("the preselected kernelspec: the one in use there, else the default, else the first", () => {
  assert.equal(initialSpec(local, { resource: "local", kernel_name: "julia" }), "julia");
  assert.equal(initialSpec(local, { resource: "server:", kernel_name: "julia" }), "python3");
  assert.equal(initialSpec(local, { resource: "local", kernel_name: "gone" }), "python3");
  assert.equal(initialSpec({ ...local, default_kernel: null }, null), "julia");
  assert.equal(initialSpec(server("", "stopped"), null), "");
});

test("server start progress in words", () => {
  assert.equal(progressText(null), "Starting…");
  assert.equal(progressText(serverProgressFrom({ resource: "server:", progress: 42.4, message: "Spawning server..." })), "42% · Spawning server...");
  assert.equal(progressText(serverProgressFrom({ resource: "server:", progress: null, message: "" })), "starting…");
  assert.equal(serverProgressFrom({ progress: 250 }).progress, 100);
  assert.equal(serverProgressFrom({ progress: "x" }).progress, null);
  const done = serverProgressFrom({ resource: "server:gpu", progress: 100, message: "", ready: true });
  assert.equal(progressText(done), "100% · ready");
  assert.equal(done.failed, false);
});

test("kept kernels, listings and failures", () => {
  assert.equal(keptText({ resource: "local", kernel_name: "julia", state: "busy", busy: true }, [local]), "julia on the service (not isolated) · busy (running a cell)");
  assert.equal(keptText({ resource: "server:gpu", kernel_name: "python3", state: "shutdown", busy: false }, []), "python3 on server 'gpu' · not running");
  const listing = listingFrom({ default: "local", resources: [local], kernel_mode: "per-user", resource: "local", kernel_name: "python3", may_choose: true, owner: "alice" });
  assert.equal(listing.kernel_mode, "per-user");
  assert.equal(listing.resources.length, 1);
  assert.deepEqual(listingFrom(null).resources, []);
  assert.equal(listingFrom({ may_choose: "yes" }).may_choose, false);
  assert.equal(failureText("Could not switch", { code: "kernel_busy", message: "a cell runs" }), "Could not switch: a cell runs");
  assert.equal(failureText("Could not switch", { code: "forbidden" }), "Could not switch: forbidden");
});
