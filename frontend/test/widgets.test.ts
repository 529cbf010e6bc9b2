import { dom } from "./browser-globals";

import assert from "node:assert/strict";
import { test } from "node:test";
import * as Y from "yjs";

import { SharedWidgetManager, type WidgetHost } from "../src/widgets";

const CONTROLS = { _model_module: "@jupyter-widgets/controls", _model_module_version: "2.0.0", _view_module: "@jupyter-widgets/controls", _view_module_version: "2.0.0" };

/** Let promises, microtasks and zero timers run (ipywidgets makes models and views asynchronously). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
}

function addModel(doc: Y.Doc, id: string, name: string, state: Record<string, unknown>, module = "@jupyter-widgets/controls"): void {
  const entry = new Y.Map<unknown>();
  const st = new Y.Map<unknown>();
  for (const [k, v] of Object.entries({ ...CONTROLS, _model_name: name, _view_name: name.replace(/Model$/, "View"), ...state })) st.set(k, v);
  entry.set("target", "jupyter.widget");
  entry.set("model_name", name);
  entry.set("model_module", module);
  entry.set("state", st);
  doc.getMap("widgets").set(id, entry);
}

function stateMap(doc: Y.Doc, id: string): Y.Map<unknown> {
  return (doc.getMap("widgets").get(id) as Y.Map<unknown>).get("state") as Y.Map<unknown>;
}

interface Sent {
  type: string;
  fields: Record<string, unknown>;
  answer: (ok: boolean) => void;
}

function setup(canChange = () => true): { doc: Y.Doc; mgr: SharedWidgetManager; sent: Sent[] } {
  const sent: Sent[] = [];
  const host: WidgetHost = {
    canChange: () => canChange(),
    send: (type, fields) => new Promise<boolean>((answer) => sent.push({ type, fields, answer })),
  };
  const mgr = new SharedWidgetManager(host);
  const doc = new Y.Doc();
  mgr.attach("c0", doc);
  return { doc, mgr, sent };
}

test("a slider is drawn by ipywidgets' own view and follows the shared value", async () => {
  const { doc, mgr } = setup();
  addModel(doc, "s1", "IntSliderModel", { value: 3, min: 0, max: 10, description: "x" });
  const holder = mgr.view("s1");
  dom.window.document.body.appendChild(holder.el);
  await settle();
  assert.ok(holder.el.querySelector(".widget-slider"), holder.el.innerHTML);
  assert.ok(holder.el.querySelector(".noUi-handle"), "noUiSlider's handle, as in JupyterLab");
  assert.equal(holder.el.querySelector(".widget-label")?.textContent, "x");
  assert.equal(holder.el.querySelector(".widget-readout")?.textContent, "3");
  stateMap(doc, "s1").set("value", 7);
  await settle();
  assert.equal((await mgr.get_model("s1")).get("value"), 7);
  assert.equal(holder.el.querySelector(".widget-readout")?.textContent, "7");
  holder.dispose();
});

test("a change is sent as widget_update; a value from elsewhere does not pull it back before its answer", async () => {
  const { doc, mgr, sent } = setup();
  addModel(doc, "s1", "IntSliderModel", { value: 3, min: 0, max: 10 });
  await settle();
  const model = await mgr.get_model("s1");
  model.set("value", 9);
  model.save_changes();
  await settle();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]?.fields, { cell_id: "c0", model_id: "s1", state: { value: 9 } });
  assert.equal(sent[0]?.type, "widget_update");
  // another user's earlier value arrives while ours is on its way: ours stays
  stateMap(doc, "s1").set("value", 4);
  await settle();
  assert.equal(model.get("value"), 9);
  // one message in flight at a time: the next change waits for the answer
  model.set("value", 8);
  model.save_changes();
  await settle();
  assert.equal(sent.length, 1);
  // the service writes ours into the doc, then answers
  stateMap(doc, "s1").set("value", 9);
  sent[0]?.answer(true);
  await new Promise((r) => setTimeout(r, 80));
  await settle();
  assert.equal(sent.length, 2, "the waiting change goes once the first is answered");
  assert.deepEqual(sent[1]?.fields.state, { value: 8 });
  assert.equal(model.get("value"), 8);
  // refused (rate limit, rights): the doc's value shows again
  sent[1]?.answer(false);
  await settle();
  assert.equal(model.get("value"), 9);
});

test("who may not run the cell sees the controls disabled and sends nothing", async () => {
  let may = false;
  const { doc, mgr, sent } = setup(() => may);
  addModel(doc, "s1", "IntSliderModel", { value: 3, disabled: false });
  addModel(doc, "b1", "ButtonModel", { description: "go", disabled: false });
  const holder = mgr.view("b1");
  dom.window.document.body.appendChild(holder.el);
  await settle();
  const slider = await mgr.get_model("s1");
  assert.equal(slider.get("disabled"), true);
  assert.equal(stateMap(doc, "s1").get("disabled"), false, "the shared state is not changed");
  assert.equal((holder.el.querySelector("button") as HTMLButtonElement).disabled, true);
  slider.set("value", 5);
  slider.save_changes();
  (await mgr.get_model("b1")).send({ event: "click" }, {});
  await settle();
  assert.equal(sent.length, 0);
  assert.equal(slider.get("value"), 3, "the doc's value shows again");
  // the rights change: enabled again, and a click goes to the kernel as widget_custom
  may = true;
  mgr.refresh();
  await settle();
  assert.equal(slider.get("disabled"), false);
  assert.equal((holder.el.querySelector("button") as HTMLButtonElement).disabled, false);
  (holder.el.querySelector("button") as HTMLButtonElement).click();
  await settle();
  assert.deepEqual(sent.map((s) => [s.type, s.fields]), [["widget_custom", { cell_id: "c0", model_id: "b1", content: { event: "click" } }]]);
  holder.dispose();
});

test("boxes show their children (also from a doc that comes later), Output widgets their outputs, unknown modules a placeholder", async () => {
  const { doc, mgr } = setup();
  const later = new Y.Doc();
  addModel(doc, "o1", "OutputModel", { _model_module: "@jupyter-widgets/output", _model_module_version: "1.0.0", _view_module: "@jupyter-widgets/output", _view_module_version: "1.0.0", outputs: [{ output_type: "stream", name: "stdout", text: "square 9\n" }] }, "@jupyter-widgets/output");
  addModel(doc, "d1", "DropdownModel", { _options_labels: ["a", "b"], index: 1, description: "pick" });
  addModel(doc, "x1", "ThingModel", { _model_module: "thing-widgets", _model_module_version: "1.0.0", _view_module: "thing-widgets", _view_module_version: "1.0.0" }, "thing-widgets");
  addModel(doc, "v1", "VBoxModel", { children: ["IPY_MODEL_d1", "IPY_MODEL_o1", "IPY_MODEL_x1", "IPY_MODEL_s9"] });
  const holder = mgr.view("v1");
  dom.window.document.body.appendChild(holder.el);
  await settle();
  assert.equal(holder.el.querySelector(".widget-vbox"), null, "waits for its child s9");
  addModel(later, "s9", "IntSliderModel", { value: 5 });
  mgr.attach("c1", later);
  await settle();
  assert.ok(holder.el.querySelector(".widget-vbox"), holder.el.innerHTML);
  assert.equal((holder.el.querySelector("select") as HTMLSelectElement).value, "b");
  assert.match(holder.el.querySelector(".widget-output")?.textContent ?? "", /square 9/);
  assert.match(holder.el.querySelector(".widget-placeholder")?.textContent ?? "", /ThingModel \(thing-widgets\)/);
  assert.ok(holder.el.querySelector(".widget-slider"));
  // the kernel closes it: the output says so; the same id back (a resync) shows again
  doc.getMap("widgets").delete("v1");
  await settle();
  assert.ok(holder.el.classList.contains("widget-missing"));
  assert.match(holder.el.textContent ?? "", /gone/);
  addModel(doc, "v1", "HBoxModel", { children: ["IPY_MODEL_d1"] });
  await settle();
  assert.ok(holder.el.querySelector(".widget-hbox"), holder.el.innerHTML);
  holder.dispose();
});

test("HTML in a description goes through the page's sanitizer", async () => {
  const { doc, mgr } = setup();
  addModel(doc, "c1", "CheckboxModel", { description: "<b>bold</b><img src=x onerror=alert(1)><script>alert(2)</script>", description_allow_html: true, value: true });
  const holder = mgr.view("c1");
  dom.window.document.body.appendChild(holder.el);
  await settle();
  assert.equal(holder.el.querySelector("label b")?.textContent, "bold");
  assert.equal(holder.el.querySelector("script"), null);
  const attrs = [...holder.el.querySelectorAll("*")].flatMap((el) => [...el.attributes].map((a) => a.name));
  assert.ok(!attrs.some((a) => a.startsWith("on")), attrs.join(" "));
  holder.dispose();
});

test("binary state: the doc's bytes reach the model as a DataView; a model's bytes go as base64 where buffer_paths say", async () => {
  const { doc, mgr, sent } = setup();
  addModel(doc, "i1", "ImageModel", { value: new Uint8Array([137, 80, 78, 71]), format: "png" });
  await settle();
  const model = await mgr.get_model("i1");
  const value = model.get("value") as DataView;
  assert.ok(value instanceof DataView);
  assert.deepEqual([...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)], [137, 80, 78, 71]);
  model.set("value", new DataView(new Uint8Array([71, 73, 70]).buffer));
  model.save_changes();
  await settle();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]?.fields, { cell_id: "c0", model_id: "i1", state: {}, buffer_paths: [["value"]], buffers: ["R0lG"] });
  // the service puts the bytes into the doc, then answers: the model keeps them
  stateMap(doc, "i1").set("value", new Uint8Array([71, 73, 70]));
  sent[0]?.answer(true);
  await settle();
  const now = model.get("value") as DataView;
  assert.deepEqual([...new Uint8Array(now.buffer, now.byteOffset, now.byteLength)], [71, 73, 70]);
});
