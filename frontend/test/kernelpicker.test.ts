import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";

import { CommandError, type Json } from "../src/connection";
import { KernelPicker, type PickerHost } from "../src/kernelpicker";
import { type KernelStatus, kernelStatusFrom } from "../src/kernelwords";

// the picker builds its elements with the page's `document`
const win = new JSDOM("<!doctype html><body></body>").window;
(globalThis as unknown as { document: Document }).document = win.document;

type Handler = (fields: Json) => Promise<Json>;

/** A host that answers commands with `handlers` and records what was sent. */
class FakeHost implements PickerHost {
  sent: [string, Json][] = [];
  listeners = new Set<(m: Json) => void>();
  constructor(
    public handlers: Record<string, Handler>,
    public kernel: KernelStatus | null = null,
    public owner = false,
  ) {}
  command(type: string, fields: Json): Promise<Json> {
    this.sent.push([type, fields]);
    const handler = this.handlers[type];
    return handler ? handler(fields) : Promise.reject(new CommandError("unknown_type", `no ${type}`));
  }
  listen(fn: (m: Json) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  status(): KernelStatus | null {
    return this.kernel;
  }
  mayChangeMode(): boolean {
    return this.owner;
  }
  emit(m: Json): void {
    for (const fn of this.listeners) fn(m);
  }
}

const python = { name: "python3", display_name: "Python 3", language: "python" };

function listing(mode: "shared" | "per-user", serverState: "ready" | "stopped", mayChoose = true): Json {
  const ready = serverState === "ready";
  return {
    resources: {
      default: "server:",
      kernel_mode: mode,
      resource: "server:",
      kernel_name: "python3",
      may_choose: mayChoose,
      owner: "alice",
      resources: [
        { resource: "server:", kind: "server", server: "", label: "your default server", state: serverState, pending: null, kernelspecs: ready ? [python] : null, default_kernel: ready ? "python3" : null },
        { resource: "gateway", kind: "gateway", label: "the kernel gateway", state: "ready", kernelspecs: [python], default_kernel: "python3" },
      ],
    },
  };
}

/** Let the promises the picker awaits settle. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
const text = (picker: KernelPicker, sel: string): string => picker.el.querySelector(sel)?.textContent ?? "";
const click = (picker: KernelPicker, sel: string): void => (picker.el.querySelector(sel) as HTMLElement).click();

test("a stopped server starts with a progress bar, then offers its kernels", async () => {
  let state: "ready" | "stopped" = "stopped";
  let finish: (ack: Json) => void = () => {};
  const host = new FakeHost({
    kernel_resources: async () => listing("per-user", state),
    start_server: () => new Promise((resolve) => (finish = resolve)),
  });
  const picker = new KernelPicker(host);
  await picker.mount();
  assert.deepEqual([...picker.el.querySelectorAll("h3")].map((e) => e.textContent), ["Your server", "The kernel gateway"]);
  const row = '[data-resource="server:"]';
  assert.equal(text(picker, `${row} .kp-state`), "stopped");
  assert.equal(picker.el.querySelector(`${row} .kp-use`), null);
  (picker.el.querySelector(`${row} .kp-start`) as HTMLElement).focus();
  click(picker, `${row} .kp-start`);
  assert.deepEqual(host.sent.at(-1), ["start_server", { server: "" }]);
  // the focus stays in the row while the dialog is drawn again
  assert.equal(win.document.activeElement, picker.el.querySelector(`${row} progress`));
  assert.equal(text(picker, `${row} .kp-progress-text`), "Starting…");
  host.emit({ type: "server_progress", resource: "server:", progress: 40, message: "Spawning server...", ready: false, failed: false });
  assert.equal(text(picker, `${row} .kp-progress-text`), "40% · Spawning server...");
  assert.equal((picker.el.querySelector(`${row} progress`) as HTMLProgressElement).value, 40);
  state = "ready";
  finish({ resource: "server:", state: "ready" });
  await settle();
  await settle();
  assert.equal(picker.el.querySelector(`${row} .kp-progress`), null);
  assert.equal(text(picker, `${row} .kp-state`), "running");
  assert.equal((picker.el.querySelector(`${row} select.kp-spec`) as HTMLSelectElement).value, "python3");
  assert.equal(win.document.activeElement, picker.el.querySelector(`${row} select.kp-spec`));
  assert.match(text(picker, ".kp-notice"), /your default server is running/);
});

test("a failed start says why, in its row, and it can be tried again", async () => {
  const host = new FakeHost({
    kernel_resources: async () => listing("per-user", "stopped"),
    start_server: () => Promise.reject(new CommandError("server_failed", "the spawner failed: no such command")),
  });
  const picker = new KernelPicker(host);
  await picker.mount();
  click(picker, ".kp-start");
  host.emit({ type: "server_progress", resource: "server:", progress: 50, message: "Spawn failed", ready: false, failed: true });
  await settle();
  const row = '[data-resource="server:"]';
  assert.equal(text(picker, `${row} .kp-start-error`), "your default server did not start: the spawner failed: no such command");
  assert.ok(picker.el.querySelector(`${row} .kp-start`), "Start is offered again");
});

test("the owner puts the shared kernel on their server only with consent; errors stay in the dialog", async () => {
  const host = new FakeHost(
    {
      kernel_resources: async () => listing("shared", "ready"),
      select_kernel: async (fields) => {
        if (fields.consent !== true) throw new CommandError("consent_required", "consent must be true: everyone who may run this notebook's cells will run code as you");
        return { status: { state: "shutdown", kernel_name: "python3", kernel_mode: "shared", resource: "server:", where: "on alice's server", kept: [] } };
      },
    },
    null,
    true,
  );
  const picker = new KernelPicker(host);
  await picker.mount();
  const row = '[data-resource="server:"]';
  assert.match(text(picker, `${row} .kp-consent-row`), /everyone who may run this notebook's cells will run code as me, alice, on your default server/);
  assert.equal(picker.el.querySelector('[data-resource="gateway"] .kp-consent'), null);
  assert.equal(text(picker, ".kp-mode-button"), "Switch to per-user mode");
  click(picker, `${row} .kp-use`);
  await settle();
  assert.deepEqual(host.sent.at(-1), ["select_kernel", { resource: "server:", kernel_name: "python3" }]);
  assert.match(text(picker, ".kp-error"), /^Could not switch the kernel: consent must be true/);
  (picker.el.querySelector(`${row} .kp-consent`) as HTMLInputElement).click();

  click(picker, `${row} .kp-use`);
  await settle();
  await settle();

  assert.deepEqual(host.sent.find(([type, f]) => type === "select_kernel" && f.consent === true)?.[1], { resource: "server:", kernel_name: "python3", consent: true });
  assert.equal(text(picker, ".kp-error"), "");
  assert.equal(text(picker, ".kp-notice"), "Using python3 on alice's server.");
});

test("in shared mode others read who picks; live kernel messages update the dialog", async () => {
  const kernel = kernelStatusFrom({ state: "idle", kernel_name: "python3", kernel_mode: "shared", resource: "server:", where: "on alice's server", kept: [] });
  const host = new FakeHost({ kernel_resources: async () => listing("shared", "ready", false) }, kernel);
  const picker = new KernelPicker(host);
  await picker.mount();
  assert.equal(text(picker, ".kp-readonly"), "The owner, alice, picks where the shared kernel runs.");
  assert.equal(picker.el.querySelector(".kp-use, .kp-start, .kp-mode-button"), null);
  assert.equal(text(picker, ".kp-now-text"), "python3 · on alice's server · idle · shared");
  host.emit({ type: "kernel", state: "busy", kernel_name: "python3", kernel_mode: "shared", resource: "server:", where: "on alice's server", kept: [{ resource: "gateway", kernel_name: "python3", state: "idle", busy: false }] });
  assert.equal(text(picker, ".kp-now-text"), "python3 · on alice's server · busy · shared");
  assert.equal(text(picker, ".kp-kept-item span"), "python3 on the kernel gateway · idle");
  assert.equal(picker.el.querySelector(".kp-switch-back"), null, "no actions for who may not choose");
  // a mode change elsewhere reloads the listing
  const before = host.sent.length;
  host.emit({ type: "kernel", state: "shutdown", kernel_name: "python3", kernel_mode: "per-user", resource: "server:", where: "on bob's server", kept: [] });
  assert.equal(host.sent.length, before + 1);
  picker.close();
  host.emit({ type: "kernel", state: "idle", kernel_name: "python3", kernel_mode: "per-user", resource: "server:", where: "on bob's server", kept: [] });
  assert.equal(host.listeners.size, 0, "a closed picker stops listening");
});

test("who may not choose gets the reason in the dialog", async () => {
  const host = new FakeHost({ kernel_resources: () => Promise.reject(new CommandError("forbidden", "you may not pick where this notebook's kernel runs (it needs notebook x)")) });
  const picker = new KernelPicker(host);
  await picker.mount();
  assert.equal(text(picker, ".kp-error"), "You cannot choose where this notebook's kernel runs: you may not pick where this notebook's kernel runs (it needs notebook x)");
  assert.equal(picker.el.querySelector(".kp-loading"), null);
});
