import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";
import * as Y from "yjs";

import { WidgetManager } from "../src/widgets";

const dom = new JSDOM("<!doctype html><body></body>");
const win = dom.window as unknown as Window;
// frames run at once: the tests look at the DOM right after a change
(win as unknown as { requestAnimationFrame: (cb: () => void) => number }).requestAnimationFrame = (cb) => {
  cb();
  return 0;
};

function addModel(doc: Y.Doc, id: string, name: string, state: Record<string, unknown>): void {
  const entry = new Y.Map<unknown>();
  const st = new Y.Map<unknown>();
  for (const [k, v] of Object.entries(state)) st.set(k, v);
  entry.set("model_name", name);
  entry.set("state", st);
  doc.getMap("widgets").set(id, entry);
}

function setup(canChange: boolean): { doc: Y.Doc; mgr: WidgetManager; sent: [string, Record<string, unknown>][] } {
  const sent: [string, Record<string, unknown>][] = [];
  const mgr = new WidgetManager(win, { canChange: () => canChange, send: (type, fields) => sent.push([type, fields]) });
  const doc = new Y.Doc();
  mgr.attach("c0", doc);
  return { doc, mgr, sent };
}

test("a slider follows the shared value and sends the user's change", () => {
  const { doc, mgr, sent } = setup(true);
  addModel(doc, "s1", "IntSliderModel", { value: 3, min: 0, max: 10, step: 1, description: "x" });
  const view = mgr.view("s1");
  const input = view.el.querySelector("input") as HTMLInputElement;
  assert.equal(input.value, "3");
  assert.equal(view.el.querySelector(".widget-description")?.textContent, "x");
  assert.equal(input.disabled, false);
  ((doc.getMap("widgets").get("s1") as Y.Map<unknown>).get("state") as Y.Map<unknown>).set("value", 7);
  assert.equal(view.el.querySelector("input"), input, "updated in place, not rebuilt");
  assert.equal(input.value, "7");
  input.value = "9";
  input.dispatchEvent(new dom.window.Event("input"));
  assert.deepEqual(sent, [["widget_update", { cell_id: "c0", model_id: "s1", state: { value: 9 } }]]);
  view.dispose();
});

test("read-only users see the controls disabled; a button sends a click", () => {
  const ro = setup(false);
  addModel(ro.doc, "b1", "ButtonModel", { description: "go" });
  const button = ro.mgr.view("b1").el.querySelector("button") as HTMLButtonElement;
  assert.equal(button.textContent, "go");
  assert.equal(button.disabled, true);
  const rw = setup(true);
  addModel(rw.doc, "b1", "ButtonModel", { description: "go" });
  (rw.mgr.view("b1").el.querySelector("button") as HTMLButtonElement).click();
  assert.deepEqual(rw.sent, [["widget_custom", { cell_id: "c0", model_id: "b1", content: { event: "click" } }]]);
});

test("boxes show their children, Output widgets their outputs, unknown models a placeholder", () => {
  const { doc, mgr } = setup(true);
  addModel(doc, "o1", "OutputModel", { outputs: [{ output_type: "stream", name: "stdout", text: "square 9\n" }] });
  addModel(doc, "d1", "DropdownModel", { _options_labels: ["a", "b"], index: 1, description: "pick" });
  addModel(doc, "x1", "PlayModel", { _model_module: "@jupyter-widgets/controls" });
  addModel(doc, "v1", "VBoxModel", { children: ["IPY_MODEL_d1", "IPY_MODEL_o1", "IPY_MODEL_x1"] });
  const view = mgr.view("v1");
  assert.ok(view.el.classList.contains("widget-vbox"));
  assert.equal((view.el.querySelector("select") as HTMLSelectElement).value, "b");
  assert.match(view.el.textContent ?? "", /square 9/);
  assert.match(view.el.querySelector(".widget-placeholder")?.textContent ?? "", /PlayModel/);
  doc.getMap("widgets").delete("v1");
  assert.ok(view.el.classList.contains("widget-missing"));
});
