/**
 * Shared ipywidgets: the page's renderer of the widget models the service keeps
 * in each cell's `out:` doc (the `widgets` Map: docs/widgets.md).
 *
 * This is our own small renderer of the standard controls (IntSlider, FloatSlider,
 * Button, Text, Checkbox, Dropdown, Label, Output, HBox/VBox/Box), reading the same
 * model state as ipywidgets' front end would; it is not `@jupyter-widgets/controls`.
 * A model of any other kind shows a placeholder that names it. Views update in place
 * when their model changes, so a slider being dragged is not rebuilt under the pointer.
 * A change is sent as `widget_update` (`widget_custom` for a click), throttled to
 * 20 a second; whoever may not execute the model's cell sees the controls disabled.
 */
import * as Y from "yjs";

import { renderOutput, type OutputModel } from "./render";

export const WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json";
/** Changes sent per widget and second at most (the service allows 30 by default). */
const SEND_INTERVAL_MS = 50;

export interface WidgetHost {
  /** May this user change the widgets of cell `cellId` (execute it)? */
  canChange(cellId: string): boolean;
  /** Send a command; failures are the host's to report. */
  send(type: "widget_update" | "widget_custom", fields: Record<string, unknown>): void;
}

interface ModelRef {
  cellId: string;
  name: string;
  state: Record<string, unknown>;
}

/** The widget models of every out doc the page holds, and the live views of them. */
export class WidgetManager {
  private sources = new Map<string, { map: Y.Map<unknown>; off: () => void }>();
  private views = new Map<string, Set<WidgetView>>();
  private dirty = new Set<string>();
  private scheduled = false;

  constructor(
    readonly win: Window,
    readonly host: WidgetHost,
  ) {}

  /** Follow the `widgets` Map of cell `cellId`'s out doc (null: no doc any more). */
  attach(cellId: string, doc: Y.Doc | null): void {
    const old = this.sources.get(cellId);
    if (old && doc && old.map === doc.getMap("widgets")) return;
    old?.off();
    this.sources.delete(cellId);
    if (old) for (const id of old.map.keys()) this.touch(id);
    if (!doc) return;
    const map = doc.getMap<unknown>("widgets");
    const obs = (events: Y.YEvent<Y.AbstractType<unknown>>[]): void => {
      for (const e of events) {
        const first = e.path[0];
        if (typeof first === "string") this.touch(first);
        else for (const key of e.changes.keys.keys()) this.touch(key);
      }
    };
    map.observeDeep(obs);
    this.sources.set(cellId, { map, off: () => map.unobserveDeep(obs) });
    for (const id of map.keys()) this.touch(id);
  }

  /** A model by id, from whichever cell holds it. */
  model(id: string): ModelRef | null {
    for (const [cellId, { map }] of this.sources) {
      const entry = map.get(id);
      if (entry instanceof Y.Map) {
        const state = entry.get("state");
        return { cellId, name: String(entry.get("model_name") ?? ""), state: state instanceof Y.Map ? (state.toJSON() as Record<string, unknown>) : {} };
      }
    }
    return null;
  }

  /** A new view of model `id` (it follows the model until disposed). */
  view(id: string): WidgetView {
    const v = new WidgetView(this, id);
    let set = this.views.get(id);
    if (!set) this.views.set(id, (set = new Set()));
    set.add(v);
    v.update();
    return v;
  }

  forget(v: WidgetView): void {
    this.views.get(v.id)?.delete(v);
  }

  /** Rights changed: every view checks whether it may still be used. */
  refresh(): void {
    for (const id of this.views.keys()) this.touch(id);
  }

  private touch(id: string): void {
    this.dirty.add(id);
    if (this.scheduled) return;
    this.scheduled = true;
    this.win.requestAnimationFrame(() => {
      this.scheduled = false;
      const ids = [...this.dirty];
      this.dirty.clear();
      for (const i of ids) for (const v of this.views.get(i) ?? []) v.update();
    });
  }
}

function idOf(ref: unknown): string {
  return typeof ref === "string" && ref.startsWith("IPY_MODEL_") ? ref.slice(10) : "";
}

function num(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) ? v : fallback;
}

/** One view of one model: its element is kept, its content follows the model. */
export class WidgetView {
  readonly el: HTMLElement;
  private kind = "";
  private sync: ((m: ModelRef, enabled: boolean) => void) | null = null;
  private children: WidgetView[] = [];
  private childKey = "";
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pending: Record<string, unknown> | null = null;
  private lastSent = 0;

  constructor(
    private manager: WidgetManager,
    readonly id: string,
  ) {
    this.el = manager.win.document.createElement("div");
    this.el.className = "widget";
    this.el.dataset.modelId = id;
  }

  dispose(): void {
    this.manager.forget(this);
    for (const c of this.children) c.dispose();
    this.children = [];
    if (this.timer) clearTimeout(this.timer);
  }

  private get doc(): Document {
    return this.manager.win.document;
  }

  update(): void {
    const m = this.manager.model(this.id);
    const kind = m ? m.name : "";
    if (kind !== this.kind || !this.sync) {
      this.kind = kind;
      this.build(m);
    }
    if (m && this.sync) this.sync(m, this.manager.host.canChange(m.cellId) && m.state.disabled !== true);
  }

  /** Send `state` (coalesced: at most one message per SEND_INTERVAL_MS, the last wins). */
  private change(m: ModelRef, state: Record<string, unknown>): void {
    this.pending = { ...(this.pending ?? {}), ...state };
    const flush = (): void => {
      this.timer = null;
      const s = this.pending;
      this.pending = null;
      if (!s) return;
      this.lastSent = Date.now();
      this.manager.host.send("widget_update", { cell_id: m.cellId, model_id: this.id, state: s });
    };
    if (this.timer) return;
    const wait = Math.max(0, this.lastSent + SEND_INTERVAL_MS - Date.now());
    if (wait === 0) flush();
    else this.timer = setTimeout(flush, wait);
  }

  /** A control with its description before it; returns the description's element. */
  private labelled(control: HTMLElement): HTMLElement {
    const label = this.doc.createElement("label");
    label.className = "widget-label";
    const text = this.doc.createElement("span");
    text.className = "widget-description";
    label.append(text, control);
    this.el.appendChild(label);
    return text;
  }

  /** A labelled form control: `read` is the state a user's `event` sends, `show` the model's. */
  private field(control: HTMLInputElement | HTMLSelectElement, event: string, read: () => Record<string, unknown>, show: (state: Record<string, unknown>) => void): void {
    const desc = this.labelled(control);
    control.addEventListener(event, () => {
      const cur = this.manager.model(this.id);
      if (cur) this.change(cur, read());
    });
    this.sync = (mm, enabled) => {
      desc.textContent = String(mm.state.description ?? "");
      show(mm.state);
      control.disabled = !enabled;
    };
  }

  private build(m: ModelRef | null): void {
    for (const c of this.children) c.dispose();
    this.children = [];
    this.childKey = "";
    this.el.replaceChildren();
    this.el.className = "widget";
    this.sync = null;
    if (!m) {
      this.el.classList.add("widget-missing");
      this.el.textContent = "This widget is gone (its kernel restarted, or its cell ran again).";
      return;
    }
    const d = this.doc;
    switch (m.name) {
      case "IntSliderModel":
      case "FloatSliderModel": {
        const isInt = m.name === "IntSliderModel";
        const input = d.createElement("input");
        input.type = "range";
        const readout = d.createElement("output");
        readout.className = "widget-readout";
        const desc = this.labelled(input);
        this.el.querySelector("label")?.appendChild(readout);
        this.el.classList.add("widget-slider");
        // while the pointer holds the thumb, echoes of earlier values do not pull it back
        let dragging = false;
        input.addEventListener("pointerdown", () => (dragging = true));
        input.addEventListener("pointerup", () => {
          dragging = false;
          this.update();
        });
        input.addEventListener("pointercancel", () => (dragging = false));
        input.addEventListener("input", () => {
          const cur = this.manager.model(this.id);
          if (!cur) return;
          const value = isInt ? Math.round(Number(input.value)) : Number(input.value);
          readout.textContent = String(value);
          this.change(cur, { value });
        });
        this.sync = (mm, enabled) => {
          const s = mm.state;
          desc.textContent = String(s.description ?? "");
          input.min = String(num(s.min, 0));
          input.max = String(num(s.max, 100));
          input.step = String(num(s.step, isInt ? 1 : 0.1));
          const value = num(s.value, 0);
          // the local drag wins until it is sent; then the shared value shows
          const settled = this.pending === null && !dragging;
          if (settled && Number(input.value) !== value) input.value = String(value);
          if (settled) readout.textContent = String(value);
          readout.hidden = s.readout === false;
          input.disabled = !enabled;
          input.setAttribute("aria-label", String(s.description ?? "") || "slider");
        };
        break;
      }
      case "ButtonModel": {
        const button = d.createElement("button");
        button.type = "button";
        button.className = "widget-button";
        button.addEventListener("click", () => {
          const cur = this.manager.model(this.id);
          if (cur) this.manager.host.send("widget_custom", { cell_id: cur.cellId, model_id: this.id, content: { event: "click" } });
        });
        this.el.appendChild(button);
        this.sync = (mm, enabled) => {
          button.textContent = String(mm.state.description ?? "") || "\u00a0";
          button.title = String(mm.state.tooltip ?? "");
          button.disabled = !enabled;
        };
        break;
      }
      case "TextModel": {
        const input = d.createElement("input");
        input.type = "text";
        this.field(input, "input", () => ({ value: input.value }), (st) => {
          input.placeholder = String(st.placeholder ?? "");
          if (d.activeElement !== input) input.value = String(st.value ?? "");
        });
        break;
      }
      case "CheckboxModel": {
        const input = d.createElement("input");
        input.type = "checkbox";
        this.field(input, "change", () => ({ value: input.checked }), (st) => {
          input.checked = st.value === true;
        });
        break;
      }
      case "DropdownModel": {
        const select = d.createElement("select");
        this.field(select, "change", () => ({ index: select.selectedIndex }), (st) => {
          const labels = Array.isArray(st._options_labels) ? st._options_labels.map(String) : [];
          if (Array.from(select.options, (o) => o.text).join("\u0000") !== labels.join("\u0000")) {
            select.replaceChildren(
              ...labels.map((l) => {
                const o = d.createElement("option");
                o.value = o.text = l;
                return o;
              }),
            );
          }
          select.selectedIndex = typeof st.index === "number" ? st.index : -1;
        });
        break;
      }
      case "LabelModel": {
        const span = d.createElement("span");
        this.el.appendChild(span);
        this.sync = (mm) => {
          span.textContent = String(mm.state.value ?? "");
        };
        break;
      }
      case "OutputModel": {
        this.el.classList.add("widget-output");
        let last = "";
        this.sync = (mm) => {
          const outputs = Array.isArray(mm.state.outputs) ? (mm.state.outputs as OutputModel[]) : [];
          const key = JSON.stringify(outputs);
          if (key === last) return;
          last = key;
          for (const c of this.children) c.dispose();
          this.children = [];
          this.el.replaceChildren(...outputs.map((o) => this.output(o)));
        };
        break;
      }
      case "HBoxModel":
      case "VBoxModel":
      case "BoxModel":
        this.el.classList.add(m.name === "HBoxModel" ? "widget-hbox" : "widget-vbox");
        this.sync = (mm) => {
          const ids = (Array.isArray(mm.state.children) ? mm.state.children : []).map(idOf).filter(Boolean);
          const key = ids.join(",");
          if (key === this.childKey) return;
          this.childKey = key;
          for (const c of this.children) c.dispose();
          this.children = ids.map((i) => this.manager.view(i));
          this.el.replaceChildren(...this.children.map((c) => c.el));
        };
        break;
      default:
        this.el.classList.add("widget-placeholder");
        this.el.textContent = `Widget ${m.name || "of unknown kind"} (${String(m.state._model_module ?? "?")}): this page does not ship its front end.`;
        this.sync = () => undefined;
    }
  }

  /** An output inside an Output widget (it may itself show a widget). */
  private output(o: OutputModel): HTMLElement {
    const ref = o.data?.[WIDGET_VIEW_MIME] as { model_id?: unknown } | undefined;
    if (ref && typeof ref.model_id === "string") {
      const child = this.manager.view(ref.model_id);
      this.children.push(child);
      return child.el;
    }
    return renderOutput(this.manager.win, o);
  }
}
