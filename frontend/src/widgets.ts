/**
 * Shared ipywidgets on the page, drawn by ipywidgets' own front end
 * (`@jupyter-widgets/base`, `@jupyter-widgets/controls`, `@jupyter-widgets/output`).
 *
 * The service holds every widget model in the `widgets` Map of the out doc of the
 * cell that opened it (docs/widgets.md). {@link SharedWidgetManager} is an ipywidgets
 * widget manager whose comms are those Maps instead of a kernel connection:
 *
 * - a model entry that appears in a Map becomes a model (`new_model`, with the state
 *   the Map holds), one that goes away closes its model (as a `comm_close` would);
 * - a change of the Map's state reaches the model as an `echo_update`, so ipywidgets'
 *   own bookkeeping keeps what the user is changing right now from being pulled back;
 * - what a view changes (`save_changes`: an `update`; a button's click: a `custom`
 *   message) is sent as the `widget_update` / `widget_custom` command, at most one
 *   message per model in flight and one per 50 ms; its answer plays the kernel's
 *   "idle" (ipywidgets' throttle) and the echo of the keys it sent. A refused change
 *   is undone (the Map's value shows again).
 *
 * Whoever may not execute a model's cell sees its controls disabled (the model's
 * `disabled`, set on this page only), and nothing they do is sent. Models of modules
 * this page does not ship show a placeholder naming them.
 */
import * as base from "@jupyter-widgets/base";
import { ManagerBase } from "@jupyter-widgets/base-manager";
import * as controls from "@jupyter-widgets/controls";
import * as outputWidgets from "@jupyter-widgets/output";
import { MessageLoop } from "@lumino/messaging";
import { Widget } from "@lumino/widgets";
import * as Y from "yjs";

import { renderOutput, type OutputModel } from "./render";

export const WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json";
/** Changes sent per widget and second at most (the service allows 30 by default). */
const SEND_INTERVAL_MS = 50;
/** How long a reference to a model (a Box's child) waits for that model to arrive. */
const MODEL_WAIT_MS = 20_000;

export interface WidgetHost {
  /** May this user change the widgets of cell `cellId` (execute it)? */
  canChange(cellId: string): boolean;
  /** Send a command; resolves true once acknowledged, false if refused (the host reports why). */
  send(type: "widget_update" | "widget_custom", fields: Record<string, unknown>): Promise<boolean>;
}

type Json = Record<string, unknown>;
type Callbacks = base.ICallbacks;

/** A model of a module this page does not ship: kept (a Box may hold it), drawn as a placeholder. */
class PlaceholderModel extends base.DOMWidgetModel {}

class PlaceholderView extends base.DOMWidgetView {
  render(): void {
    this.el.classList.add("widget-placeholder");
    const m = this.model;
    const module = String(m.get("_model_module") ?? "?");
    const version = String(m.get("_model_module_version") ?? "");
    const why = MODULES[module] ? `version ${version} of it` : "its front end";
    this.el.textContent = `Widget ${String(m.get("_model_name") || "of unknown kind")} (${module}): this page does not ship ${why}.`;
  }
}

/** The Output widget: its `outputs` drawn as the page draws a cell's (widgets inside included). */
class SharedOutputView extends outputWidgets.OutputView {
  private holders: WidgetHolder[] = [];

  render(): void {
    super.render();
    this.el.classList.add("widget-output", "jupyter-widgets-output-area");
    this.listenTo(this.model, "change:outputs", () => this.draw());
    this.draw();
  }

  private draw(): void {
    for (const h of this.holders) h.dispose();
    this.holders = [];
    const manager = this.model.widget_manager as unknown as SharedWidgetManager;
    const outputs = this.model.get("outputs");
    const nodes = (Array.isArray(outputs) ? (outputs as OutputModel[]) : []).map((o) => {
      const id = widgetRef(o);
      if (id === null) return renderOutput(window, o);
      const holder = manager.view(id);
      this.holders.push(holder);
      return holder.el;
    });
    this.el.replaceChildren(...nodes);
  }

  remove(): this {
    for (const h of this.holders) h.dispose();
    this.holders = [];
    return super.remove();
  }
}

/** The module versions this page draws (ipywidgets 8's protocol): by major version. */
const MODULES: Record<string, { major: string; exports: Record<string, unknown> }> = {
  "@jupyter-widgets/base": { major: "2", exports: base as unknown as Record<string, unknown> },
  "@jupyter-widgets/controls": { major: "2", exports: controls as unknown as Record<string, unknown> },
  "@jupyter-widgets/output": { major: "1", exports: { OutputModel: outputWidgets.OutputModel, OutputView: SharedOutputView } },
};

/** The model a `display_data` output shows, if it shows one. */
export function widgetRef(o: OutputModel): string | null {
  const ref = o.data?.[WIDGET_VIEW_MIME] as { model_id?: unknown } | undefined;
  return ref && typeof ref.model_id === "string" ? ref.model_id : null;
}

/** A state value with the doc's binary values (Uint8Array) as the DataViews ipywidgets expects. */
function withViews(v: unknown): unknown {
  // a copy: ipywidgets sends a view's whole buffer, and yjs' bytes may be a part of a larger one
  if (v instanceof Uint8Array) return new DataView(v.slice().buffer);
  if (Array.isArray(v)) return v.map(withViews);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withViews(x)]));
  return v;
}

function base64(buf: unknown): string {
  const bytes = ArrayBuffer.isView(buf) ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : new Uint8Array(buf as ArrayBuffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** What stands for a kernel comm: one per model, fed from the model's Map. */
class MapComm implements base.IClassicComm {
  readonly target_name = "jupyter.widget";
  onMsg: ((msg: unknown) => void) | null = null;
  onClose: ((msg: unknown) => void) | null = null;
  closed = false;

  constructor(
    private manager: SharedWidgetManager,
    readonly comm_id: string,
    readonly cellId: string,
  ) {}

  open(): string {
    return "";
  }

  send(data: unknown, callbacks?: Callbacks, _metadata?: unknown, buffers?: unknown[]): string {
    return this.manager.sendFrom(this, data as Json, callbacks, buffers ?? []);
  }

  /** The page never closes a model itself: only the kernel (through the service) does. */
  close(): string {
    return "";
  }

  on_msg(cb: (msg: unknown) => void): void {
    this.onMsg = cb;
  }

  on_close(cb: (msg: unknown) => void): void {
    this.onClose = cb;
  }

  /** Hand the model a message as the kernel would. */
  deliver(data: Json, parentId = ""): void {
    this.onMsg?.({ content: { comm_id: this.comm_id, data }, parent_header: { msg_id: parentId }, buffers: [] });
  }
}

interface Live {
  cellId: string;
  entry: Y.Map<unknown>;
  comm: MapComm;
  model: Promise<base.WidgetModel>;
  /** the model exists (keys changed before go to it then) */
  ready: boolean;
  /** keys that changed while the model was being made */
  early: Set<string>;
  /** per message sent and not yet answered: its keys */
  inFlight: Map<string, string[]>;
  lastSent: number;
}

let serial = 0;

/** The widget models of every out doc the page holds, and views of them. */
export class SharedWidgetManager extends ManagerBase {
  private sources = new Map<string, { map: Y.Map<unknown>; off: () => void }>();
  private live = new Map<string, Live>();
  private registry = new Map<string, Promise<base.WidgetModel>>();
  private waiting = new Map<string, ((p: Promise<base.WidgetModel>) => void)[]>();
  private holders = new Map<string, Set<WidgetHolder>>();
  /** model id → keys changed (or "*": the entry came, went or changed kind) */
  private changed = new Map<string, Set<string>>();
  private scheduled = false;

  constructor(readonly host: WidgetHost) {
    super();
  }

  // -- the Maps ---------------------------------------------------------------------------------

  /** Follow the `widgets` Map of cell `cellId`'s out doc (null: no doc any more). */
  attach(cellId: string, doc: Y.Doc | null): void {
    const old = this.sources.get(cellId);
    if (old && doc && old.map === doc.getMap("widgets")) return;
    old?.off();
    this.sources.delete(cellId);
    if (old) for (const [id, l] of this.live) if (l.cellId === cellId) this.touch(id, "*");
    if (doc) {
      const map = doc.getMap<unknown>("widgets");
      const obs = (events: Y.YEvent<Y.AbstractType<unknown>>[]): void => {
        for (const e of events) {
          const [first, second] = e.path;
          if (first === undefined) for (const key of e.changes.keys.keys()) this.touch(key, "*");
          else if (typeof first === "string" && second === "state" && e.path.length === 2) for (const key of e.changes.keys.keys()) this.touch(first, key);
          else if (typeof first === "string" && e.path.length === 1) this.touch(first, "*");
          else if (typeof first === "string" && typeof second === "string") this.touch(first, e.path.length > 2 && second === "state" ? String(e.path[2]) : "*");
        }
      };
      map.observeDeep(obs);
      this.sources.set(cellId, { map, off: () => map.unobserveDeep(obs) });
      for (const id of map.keys()) this.touch(id, "*");
    }
    this.flush();
  }

  /** Rights changed: every model's controls are enabled or disabled again. */
  refresh(): void {
    for (const [id, l] of this.live) if (l.entry.get("state") instanceof Y.Map && (l.entry.get("state") as Y.Map<unknown>).has("disabled")) this.touch(id, "disabled");
    this.flush();
  }

  private entryOf(id: string): { cellId: string; entry: Y.Map<unknown> } | null {
    for (const [cellId, { map }] of this.sources) {
      const entry = map.get(id);
      if (entry instanceof Y.Map) return { cellId, entry };
    }
    return null;
  }

  private touch(id: string, key: string): void {
    let keys = this.changed.get(id);
    if (!keys) this.changed.set(id, (keys = new Set()));
    keys.add(key);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Bring the models in line with the Maps: create, close, update. */
  private flush(): void {
    this.scheduled = false;
    const changed = [...this.changed];
    this.changed.clear();
    // every new model is registered before any is deserialized, so a Box finds its children
    const news: string[] = [];
    for (const [id, keys] of changed) {
      const now = this.entryOf(id);
      const l = this.live.get(id);
      if (l && (!now || now.entry !== l.entry || now.cellId !== l.cellId)) this.close(id, l);
      if (now && (!l || now.entry !== l.entry || now.cellId !== l.cellId)) {
        this.create(id, now.cellId, now.entry);
        news.push(id);
      } else if (l && now) this.update(l, keys);
    }
    for (const id of news) for (const h of this.holders.get(id) ?? []) h.show();
    for (const [id] of changed) if (!this.live.has(id)) for (const h of this.holders.get(id) ?? []) h.show();
  }

  private stateOf(l: { cellId: string; entry: Y.Map<unknown> }, keys: Iterable<string> | null): Json {
    const st = l.entry.get("state");
    const out: Json = {};
    if (!(st instanceof Y.Map)) return out;
    for (const k of keys ?? st.keys()) {
      if (!st.has(k)) continue;
      const v = st.get(k);
      out[k] = withViews(v instanceof Y.AbstractType ? v.toJSON() : v);
    }
    if ("disabled" in out && !this.host.canChange(l.cellId)) out.disabled = true;
    return out;
  }

  private create(id: string, cellId: string, entry: Y.Map<unknown>): void {
    const comm = new MapComm(this, id, cellId);
    const state = this.stateOf({ cellId, entry }, null);
    const live: Live = { cellId, entry, comm, model: Promise.resolve(null as unknown as base.WidgetModel), ready: false, early: new Set(), inFlight: new Map(), lastSent: 0 };
    this.live.set(id, live);
    live.model = this.new_model(
      {
        model_id: id,
        model_name: String(entry.get("model_name") ?? state._model_name ?? ""),
        model_module: String(entry.get("model_module") ?? state._model_module ?? ""),
        model_module_version: String(state._model_module_version ?? ""),
        comm,
      },
      state,
    );
    live.model.then(
      () => {
        live.ready = true;
        if (live.early.size && this.live.get(id) === live) this.update(live, live.early);
        live.early.clear();
      },
      (err: unknown) => console.warn(`widget ${id}:`, err),
    );
  }

  private update(l: Live, keys: Set<string>): void {
    if (keys.has("*")) keys = new Set((l.entry.get("state") as Y.Map<unknown> | undefined)?.keys() ?? []);
    if (!l.ready) {
      for (const k of keys) l.early.add(k);
      return;
    }
    const state = this.stateOf(l, keys);
    // what this page sent and is not answered yet stays: its answer brings the Map's value
    if (Object.keys(state).length) l.comm.deliver({ method: "echo_update", state, buffer_paths: [] });
  }

  private close(id: string, l: Live): void {
    this.live.delete(id);
    l.comm.closed = true;
    if (this.registry.get(id) === l.model) this.registry.delete(id);
    l.comm.onClose?.({ content: { comm_id: id, data: {} } });
    // a model still being made is closed once it is
    if (!l.ready) void l.model.then((m) => m.close(true)).catch(() => undefined);
  }

  // -- what views send --------------------------------------------------------------------------

  /** A model's message to "the kernel": a command to the service. Returns its message id. */
  sendFrom(comm: MapComm, data: Json, callbacks: Callbacks | undefined, buffers: unknown[]): string {
    const msgId = `page-${++serial}`;
    const l = this.live.get(comm.comm_id);
    const idle = (): void => callbacks?.iopub?.status?.({ content: { execution_state: "idle" }, parent_header: { msg_id: msgId } } as never);
    const method = data.method;
    const stale = !l || l.comm !== comm || comm.closed;
    if (method === "request_state") {
      if (l && !stale) queueMicrotask(() => comm.deliver({ method: "update", state: this.stateOf(l, null), buffer_paths: [] }, msgId));
      return msgId;
    }
    const update = method === "update" && typeof data.state === "object" && data.state !== null;
    // the keys it changes: those of its state, and those its buffers go into (ipywidgets takes them out of the state)
    const paths = Array.isArray(data.buffer_paths) ? (data.buffer_paths as unknown[][]) : [];
    const keys = update ? [...new Set([...Object.keys(data.state as Json), ...paths.map((p) => String(p[0]))])] : [];
    // nothing that cannot reach the kernel is sent: the model shows the Map's values again
    if (stale || !this.host.canChange(l.cellId) || (!update && method !== "custom")) {
      queueMicrotask(() => {
        idle();
        if (l && !stale && keys.length) comm.deliver({ method: "echo_update", state: this.stateOf(l, keys), buffer_paths: [] }, msgId);
      });
      return msgId;
    }
    const fields: Json = update ? { cell_id: l.cellId, model_id: comm.comm_id, state: data.state } : { cell_id: l.cellId, model_id: comm.comm_id, content: data.content ?? {} };
    // binary buffers (a FileUpload's files) go as base64, where ipywidgets' buffer_paths say
    if (update && buffers.length) Object.assign(fields, { buffer_paths: data.buffer_paths, buffers: buffers.map(base64) });
    l.inFlight.set(msgId, keys);
    const go = (): void => {
      l.lastSent = Date.now();
      void this.host.send(update ? "widget_update" : "widget_custom", fields).then((ok) => {
        l.inFlight.delete(msgId);
        idle();
        // the answer comes after the Map holds the change: now the Map's value is the one to show
        // (the same as the user's if accepted, the earlier one if refused)
        if (keys.length && this.live.get(comm.comm_id) === l) comm.deliver({ method: "echo_update", state: this.stateOf(l, keys), buffer_paths: [] }, msgId);
        if (!ok) this.touch(comm.comm_id, "*");
      });
    };
    const wait = l.lastSent + SEND_INTERVAL_MS - Date.now();
    if (wait > 0) setTimeout(go, wait);
    else go();
    return msgId;
  }

  // -- ManagerBase ------------------------------------------------------------------------------

  protected async loadClass(className: string, moduleName: string, moduleVersion: string): Promise<typeof base.WidgetModel | typeof base.WidgetView> {
    const mod = MODULES[moduleName];
    const cls = mod && moduleVersion.split(".")[0] === mod.major ? mod.exports[className] : undefined;
    if (!cls) throw new Error(`this page does not ship ${className} of ${moduleName} ${moduleVersion}`);
    return cls as typeof base.WidgetModel;
  }

  /** A model of a module (or version) this page does not ship is a placeholder, not an error. */
  protected async loadModelClass(className: string, moduleName: string, moduleVersion: string): Promise<typeof base.WidgetModel> {
    return (this.loadClass(className, moduleName, moduleVersion) as Promise<typeof base.WidgetModel>).catch(() => PlaceholderModel);
  }

  protected async loadViewClass(className: string, moduleName: string, moduleVersion: string): Promise<typeof base.WidgetView> {
    return (this.loadClass(className, moduleName, moduleVersion) as Promise<typeof base.WidgetView>).catch(() => PlaceholderView);
  }

  protected async _create_comm(): Promise<base.IClassicComm> {
    throw new Error("the page does not open widgets: only a kernel does");
  }

  protected async _get_comm_info(): Promise<Record<string, never>> {
    return {};
  }

  register_model(model_id: string, modelPromise: Promise<base.WidgetModel>): void {
    super.register_model(model_id, modelPromise);
    this.registry.set(model_id, modelPromise);
    for (const resolve of this.waiting.get(model_id) ?? []) resolve(modelPromise);
    this.waiting.delete(model_id);
  }

  has_model(model_id: string): boolean {
    return this.registry.has(model_id);
  }

  /** A model by id; one that is not here yet (another cell's doc still coming) is waited for. */
  get_model(model_id: string): Promise<base.WidgetModel> {
    const known = this.registry.get(model_id);
    if (known) return known;
    return new Promise<base.WidgetModel>((resolve, reject) => {
      let list = this.waiting.get(model_id);
      if (!list) this.waiting.set(model_id, (list = []));
      const timer = setTimeout(() => {
        const l = this.waiting.get(model_id);
        if (l) l.splice(l.indexOf(take), 1);
        reject(new Error(`widget model ${model_id} not found`));
      }, MODEL_WAIT_MS);
      const take = (p: Promise<base.WidgetModel>): void => {
        clearTimeout(timer);
        resolve(p);
      };
      list.push(take);
    });
  }

  // -- views ------------------------------------------------------------------------------------

  /** A view of model `id` for an output (it follows the model, also when it goes and comes back). */
  view(id: string): WidgetHolder {
    const h = new WidgetHolder(this, id);
    let set = this.holders.get(id);
    if (!set) this.holders.set(id, (set = new Set()));
    set.add(h);
    h.show();
    return h;
  }

  forget(h: WidgetHolder): void {
    this.holders.get(h.id)?.delete(h);
  }

  /** The live model of `id` now (a promise), or null if none. */
  current(id: string): Promise<base.WidgetModel> | null {
    return this.live.get(id)?.model ?? null;
  }
}

/** Where a model is shown in an output: a kept element that holds the model's current view. */
export class WidgetHolder {
  readonly el: HTMLElement;
  private shown: Promise<base.WidgetModel> | null = null;
  private view: base.DOMWidgetView | null = null;
  private disposed = false;

  constructor(
    private manager: SharedWidgetManager,
    readonly id: string,
  ) {
    this.el = document.createElement("div");
    this.el.className = "widget";
    this.el.dataset.modelId = id;
  }

  /** Show the model's current view, or say it is gone. */
  show(): void {
    if (this.disposed) return;
    const model = this.manager.current(this.id);
    if (model === this.shown && (model !== null || this.el.classList.contains("widget-missing"))) return;
    this.shown = model;
    this.clear();
    if (!model) {
      this.el.classList.add("widget-missing");
      this.el.textContent = "This widget is gone (its kernel restarted, or its cell ran again).";
      return;
    }
    void model
      .then((m) => this.manager.create_view(m))
      .then((view) => {
        if (this.disposed || this.shown !== model) {
          view.remove();
          return;
        }
        this.view = view as base.DOMWidgetView;
        const w = this.view.luminoWidget;
        // as Widget.attach does, also while the output is not in the page yet
        MessageLoop.sendMessage(w, Widget.Msg.BeforeAttach);
        this.el.appendChild(w.node);
        MessageLoop.sendMessage(w, Widget.Msg.AfterAttach);
      })
      .catch((err: unknown) => {
        if (this.disposed || this.shown !== model) return;
        this.el.classList.add("widget-missing");
        this.el.textContent = `This widget cannot be shown: ${err instanceof Error ? err.message : String(err)}`;
      });
  }

  private clear(): void {
    const v = this.view;
    this.view = null;
    if (v) {
      if (v.luminoWidget.isAttached) {
        MessageLoop.sendMessage(v.luminoWidget, Widget.Msg.BeforeDetach);
        v.luminoWidget.node.remove();
        MessageLoop.sendMessage(v.luminoWidget, Widget.Msg.AfterDetach);
      }
      v.remove();
    }
    this.el.replaceChildren();
    this.el.classList.remove("widget-missing");
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.manager.forget(this);
    this.clear();
  }
}
