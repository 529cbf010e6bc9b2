/**
 * The notebook page: toolbar, kernel status, who is here, the cells (in the
 * order of the `index` doc), Jupyter's command-mode keys, the chat panel, the
 * share dialogs and the kernel picker (opened from the kernel status). State lives in the {@link Connection}'s Y.Docs; this view
 * follows them.
 */
import * as Y from "yjs";

import { Api } from "./api";
import { CellView, type IndexEntry } from "./cell";
import { ChatPanel } from "./chat";
import { Column } from "./column";
import { Comments } from "./comments";
import { CellHistoryDialog, NotebookHistoryDialog } from "./history";
import type { PageConfig } from "./config";
import { CommandError, Connection, type Json } from "./connection";
import { confirmDialog } from "./dialog";
import { h, clear, toast, userColor, initials } from "./dom";
import { KernelPicker, type PickerHost } from "./kernelpicker";
import { type KernelStatus, kernelStatusFrom, modeWords, statusText } from "./kernelwords";
import { rightsInWords } from "./permissions";
import { INDEX_DOC, canExec, canWrite, splitDocName } from "./protocol";
import { ShareDialog } from "./share";
import { SharedWidgetManager } from "./widgets";

interface PresenceState {
  user?: { name?: string };
  cell?: string;
  typing?: boolean;
  status?: string;
}

declare global {
  interface Window {
    hubCollab?: Record<string, unknown>;
  }
}

/** Notebooks with more cells than this keep only the cells near the screen whole (windowing). */
export const WINDOW_MIN_CELLS = 300;
/** How far past the screen (px, above and below) a windowed notebook keeps cells whole. */
const WINDOW_MARGIN = 800;
/** The height a windowed cell never shown yet is given (px), until it is. */
const SHELL_ESTIMATE = 64;
/** The space below each cell (px): `.cell`'s bottom margin in style.css. */
const CELL_GAP = 6;

/** Does the browser tell an element when `content-visibility: auto` starts or stops skipping it? */
const CV_EVENTS = typeof window !== "undefined" && "oncontentvisibilityautostatechange" in window;

export class NotebookView {
  readonly conn: Connection;
  readonly api: Api;
  readonly cells = new Map<string, CellView>();
  order: string[] = [];
  active: CellView | null = null;
  mode: "command" | "edit" = "command";
  renderAll = false;
  meta: Json = {};
  private cellsEl: HTMLElement;
  private banner: HTMLElement;
  private kernelEl: HTMLButtonElement;
  private kernelStatus: KernelStatus | null = null;
  private picker: KernelPicker | null = null;
  private avatarsEl: HTMLElement;
  private titleEl: HTMLElement;
  private rightsEl: HTMLElement;
  private io: IntersectionObserver;
  /** the cells the IntersectionObserver watches (watch) */
  private observed = new Set<CellView>();
  /** windowing (WINDOW_MIN_CELLS): the cells kept whole, and what watches their size */
  private windowed = false;
  private near = new Set<CellView>();
  /** windowing: each cell's height and the space below it, as last seen in the page (px), and where it starts */
  private column = new Column<CellView>(SHELL_ESTIMATE + CELL_GAP);
  /** windowing: the boxes that stand for the runs of cells not in the page, in page order */
  private spacers: HTMLElement[] = [];
  /** the cells whose kernel asks this user for input (kept in the page while it does) */
  private asking = new Set<CellView>();
  private windowScheduled = false;
  private resizes: ResizeObserver;
  /** cells waiting for an editor (wantEditor), and when the cells last scrolled */
  private mountQueue = new Set<CellView>();
  private mountScheduled = false;
  private lastScroll = -Infinity;
  private pointerDown = false;
  private chat: ChatPanel;
  readonly comments: Comments;
  /** the shared ipywidgets models of every out doc held, and their views (widgets.ts) */
  readonly widgets: SharedWidgetManager;
  private lastD = 0;
  private indexObserved: Y.Array<Y.Map<unknown>> | null = null;
  private reconcileScheduled = false;
  private presenceScheduled = false;
  readonly t0 = performance.now();
  private readyMarked = false;

  constructor(
    readonly cfg: PageConfig,
    root: HTMLElement,
  ) {
    const nb = cfg.notebook as string;
    this.api = new Api(cfg);
    this.conn = new Connection(cfg.base_url, nb);
    this.cellsEl = h("main", { class: "cells", "aria-label": "cells" });
    this.banner = h("div", { class: "banner", hidden: true, role: "alert" });
    this.kernelEl = h("button", { type: "button", class: "tb kernel-status", title: "The kernel: where it runs. Click to choose.", "aria-haspopup": "dialog", onclick: () => this.openKernelPicker() }, "kernel: …");
    this.avatarsEl = h("div", { class: "avatars", "aria-label": "who is here" });
    this.titleEl = h("h1", { class: "nb-title" }, "…");
    this.rightsEl = h("span", { class: "nb-rights" });
    this.widgets = new SharedWidgetManager({
      canChange: (cellId) => canExec(this.conn.caps.notebook) && canExec(this.conn.caps.cells[cellId] ?? "---"),
      send: async (type, fields) => (await this.cmd(type, fields as Json)) !== null,
    });
    this.chat = new ChatPanel(this);
    this.comments = new Comments(this);
    // a button with words is named by them (the title adds the details); a symbol's button by its title
    const btn = (label: string, title: string, fn: () => void, cls = ""): HTMLButtonElement => h("button", { class: `tb ${cls}`, title, "aria-label": /[a-z]/i.test(label) ? null : title, onclick: () => fn() }, label);
    const typeSelect = h("select", { class: "tb cell-type-select", title: "Cell type", "aria-label": "Cell type" }, h("option", { value: "code" }, "Code"), h("option", { value: "markdown" }, "Markdown"), h("option", { value: "raw" }, "Raw"));
    typeSelect.addEventListener("change", () => {
      if (this.active) void this.setType(this.active, typeSelect.value);
    });
    this.typeSelect = typeSelect;
    const toolbar = h(
      "div",
      { class: "toolbar", role: "toolbar" },
      btn("+ code", "Insert a code cell below (B)", () => void this.insert("below", "code")),
      btn("+ text", "Insert a markdown cell below", () => void this.insert("below", "markdown")),
      btn("✂", "Delete the cell (D, D)", () => this.active && void this.deleteCell(this.active)),
      btn("↑", "Move the cell up (Ctrl-Shift-↑)", () => this.active && void this.move(this.active, -1)),
      btn("↓", "Move the cell down (Ctrl-Shift-↓)", () => this.active && void this.move(this.active, 1)),
      typeSelect,
      h("span", { class: "sep" }),
      btn("▶ Run", "Run the cell and select the next (Shift-Enter)", () => this.active && this.runCell(this.active, "advance"), "run"),
      btn("▶▶ Run all", "Run all cells", () => void this.cmd("execute_all")),
      btn("■", "Interrupt the kernel (I, I)", () => void this.cmd("interrupt")),
      btn("↻", "Restart the kernel (0, 0)", () => void this.restart()),
      this.kernelEl,
      h("span", { class: "sep" }),
      btn("⤓ .ipynb", "Export as .ipynb", () => this.exportIpynb()),
      btn("Share", "Who may open, edit and run this notebook", () => void this.openShare(), "share-btn"),
      btn("History", "What changed, who changed it; the notebook at a chosen time", () => void new NotebookHistoryDialog(this).open(), "history-btn"),
      btn("Chat", "Show or hide the chat", () => this.chat.toggle(), "chat-btn"),
      this.comments.bell,
    );
    const header = h(
      "header",
      { class: "nb-header" },
      h("a", { class: "home-link", href: cfg.base_url, title: "All notebooks" }, "hub-collab"),
      this.titleEl,
      this.rightsEl,
      this.avatarsEl,
      h("span", { class: "me", title: "you" }, cfg.user.name),
    );
    root.append(h("div", { class: "nb-page" }, header, toolbar, this.comments.bellList, this.banner, h("div", { class: "nb-split" }, this.cellsEl, this.chat.el)));

    this.io = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          const id = (e.target as HTMLElement).dataset.cellId as string;
          this.cells.get(id)?.setVisible(e.isIntersecting);
        }
      },
      // the cells' own scroller as the root: a margin applies to the root only
      { root: this.cellsEl, rootMargin: "600px 0px" },
    );

    this.resizes = new ResizeObserver(() => this.scheduleWindow());
    window.addEventListener("resize", () => this.scheduleWindow(), { passive: true });
    const scrolled = (): void => {
      this.lastScroll = performance.now();
      this.scheduleWindow();
    };
    this.cellsEl.addEventListener("scroll", scrolled, { passive: true });
    // no editor is made under a pressed pointer (it would take the release: a lost click)
    document.addEventListener("pointerdown", () => (this.pointerDown = true), { capture: true, passive: true });
    for (const end of ["pointerup", "pointercancel"]) document.addEventListener(end, () => (this.pointerDown = false), { capture: true, passive: true });
    window.addEventListener("scroll", scrolled, { passive: true });

    this.conn.on("status", (s) => this.showStatus(s));
    this.conn.on("synced", (name) => {
      if (name === INDEX_DOC) this.observeIndex();
      this.checkReady();
    });
    this.conn.on("docAdded", (name) => this.onDocChanged(name));
    this.conn.on("docDropped", (name) => this.onDocChanged(name));
    this.conn.on("caps", () => this.onCaps());
    this.conn.on("reset", () => {
      this.showBanner("This notebook was reset on the server; reloading…", "error");
      setTimeout(() => window.location.reload(), 300);
    });
    this.conn.on("message", (m) => this.onMessage(m));
    this.conn.awareness.on("change", () => this.schedulePresence());
    this.conn.setPresence({ user: { color: userColor(cfg.user.name) } });
    window.addEventListener("online", () => this.conn.reconnectNow());
    document.addEventListener("keydown", (e) => this.onKey(e));
    // a cell focused (clicked beside its editor and controls) is the one selected: Enter edits it
    this.cellsEl.addEventListener("focusin", (e) => {
      const el = e.target as HTMLElement;
      const cell = el.classList.contains("cell") ? this.cells.get(el.dataset.cellId ?? "") : undefined;
      if (cell && cell !== this.active) this.select(cell, false);
    });
    window.hubCollab = { view: this, conn: this.conn, t0: this.t0 };
    this.conn.connect();
    void this.loadMeta();
  }

  private typeSelect: HTMLSelectElement;

  private async loadMeta(): Promise<void> {
    try {
      this.meta = await this.api.request<Json>("GET", `api/notebooks/${this.cfg.notebook}`);
      const name = String(this.meta.name ?? "notebook");
      this.titleEl.textContent = name;
      document.title = `${name} · hub-collab`;
    } catch (err) {
      this.showBanner(`This notebook cannot be opened: ${(err as Error).message}`, "error");
    }
  }

  // -- connection state -------------------------------------------------------------------------

  private showStatus(s: string): void {
    document.body.dataset.connection = s;
    if (s === "reconnecting") this.showBanner("Connection lost. Reconnecting… your edits are kept and will be sent.", "warn");
    else if (s === "open") this.hideBanner();
    else if (s === "closed") this.showBanner("Disconnected.", "warn");
  }

  showBanner(text: string, kind: "warn" | "error" | "info"): void {
    this.banner.textContent = text;
    this.banner.className = `banner banner-${kind}`;
    this.banner.hidden = false;
  }

  hideBanner(): void {
    this.banner.hidden = true;
  }

  private onMessage(m: Json): void {
    switch (m.type) {
      case "kernel":
        this.showKernel(m);
        break;
      case "input_request": {
        const cell = this.cells.get(String(m.cell_id));
        if (!cell) break;
        this.asking.add(cell);
        if (this.windowed && !this.near.has(cell)) this.updateWindow(); // kept in the page while it asks
        cell.showInput(m as { prompt?: string; password?: boolean }, true);
        break;
      }
      case "input_waiting":
        this.cells.get(String(m.cell_id))?.showInput(m as { user?: string }, false);
        break;
      case "input_done": {
        const cell = this.cells.get(String(m.cell_id));
        if (cell) this.asking.delete(cell);
        cell?.showInput(null, false);
        this.scheduleWindow();
        break;
      }
      case "error":
        if (m.ref === undefined) this.onServerError(m);
        break;
      case "welcome":
        this.chat.onWelcome();
        this.comments.onWelcome();
        break;
      default:
        if (!this.comments.onMessage(m)) this.chat.onMessage(m);
    }
  }

  private onServerError(m: Json): void {
    const code = String(m.code);
    const doc = typeof m.doc === "string" ? m.doc : null;
    if (code === "forbidden" && doc) {
      const parts = splitDocName(doc);
      toast(parts && parts[0] === "cell" ? "Your edit was undone: you may not edit this cell." : "That change is not allowed; it was undone.", "error");
    } else if (code === "not_subscribed" && doc) {
      // Updates sent before the server's refusal reached us meet a doc the server
      // already dropped: the refusal said so, and we are syncing that doc again.
      // Otherwise the server lost our subscription: sync again and say so.
      if (this.conn.synced.has(doc)) {
        this.conn.resync(doc);
        toast("An edit did not reach the server and was undone; the cell was loaded again.", "error");
      }
    } else if (code === "epoch_mismatch") {
      // handled by the reset
    } else if (code === "notebook_deleted") {
      this.showBanner("This notebook was deleted.", "error");
    } else {
      toast(`${String(m.message ?? code)}`, "error");
    }
  }

  private showKernel(m: Json): void {
    const s = kernelStatusFrom(m);
    this.kernelStatus = s;
    this.kernelEl.textContent = statusText(s);
    this.kernelEl.dataset.state = s.state;
    this.kernelEl.dataset.where = s.where;
    this.kernelEl.dataset.mode = s.kernel_mode;
    this.kernelEl.title = `${s.message ? `${s.message}\n` : ""}Kernel mode ${modeWords(s.kernel_mode)}. Click to choose where the kernel runs.`;
  }

  // -- kernel picker ----------------------------------------------------------------------------

  openKernelPicker(): void {
    if (this.picker?.el.open) return;
    const conn = this.conn;
    const host: PickerHost = {
      command: (type, fields, timeoutMs) => conn.command(type, fields, timeoutMs),
      listen: (fn) => conn.on("message", fn),
      status: () => this.kernelStatus,
      mayChangeMode: () => !!(conn.caps.owner || conn.caps.admin),
    };
    this.picker = new KernelPicker(host, this.kernelEl);
    void this.picker.open();
  }

  // -- index and caps ---------------------------------------------------------------------------

  private observeIndex(): void {
    const arr = this.conn.indexCells();
    if (!arr || arr === this.indexObserved) {
      this.scheduleReconcile();
      return;
    }
    this.indexObserved = arr;
    arr.observeDeep(() => this.scheduleReconcile());
    this.reconcile();
  }

  private onDocChanged(name: string): void {
    if (name === INDEX_DOC) {
      this.indexObserved = null;
      return;
    }
    const parts = splitDocName(name);
    if (parts && parts[1]) {
      const cell = this.cells.get(parts[1]);
      if (cell) queueMicrotask(() => cell.attachDocs());
    }
  }

  private onCaps(): void {
    const caps = this.conn.caps;
    this.rightsEl.textContent = `you: ${caps.notebook}`;
    this.rightsEl.title = `On this notebook you ${rightsInWords(caps.notebook, "notebook")}${caps.owner ? " (you own it)" : ""}`;
    document.body.dataset.nbRights = caps.notebook;
    for (const cell of this.cells.values()) cell.update(cell.entry, caps.cells[cell.id] ?? "---");
    this.widgets.refresh();
    this.chat.onCaps();
    this.comments.onCaps();
  }

  private scheduleReconcile(): void {
    if (this.reconcileScheduled) return;
    this.reconcileScheduled = true;
    queueMicrotask(() => {
      this.reconcileScheduled = false;
      this.reconcile();
    });
  }

  /** Make the cell views follow the index: create, update, remove and order them. */
  private reconcile(): void {
    const arr = this.conn.indexCells();
    if (!arr) return;
    const entries = arr.toArray().map((m) => (m instanceof Y.Map ? m.toJSON() : m) as IndexEntry);
    const ids = entries.map((e) => e.id);
    const keep = new Set(ids);
    for (const [id, cell] of this.cells) {
      if (!keep.has(id)) {
        this.io.unobserve(cell.el);
        this.observed.delete(cell);
        this.near.delete(cell);
        this.column.forget(cell);
        this.asking.delete(cell);
        this.resizes.unobserve(cell.el);
        cell.destroy();
        this.comments.detach(id);
        this.cells.delete(id);
        if (this.active === cell) this.active = null;
      }
    }
    const fresh: CellView[] = [];
    for (const e of entries) {
      let cell = this.cells.get(e.id);
      if (!cell) {
        // a windowed notebook's cells are boxes until they first come near the screen
        cell = new CellView(this, e, ids.length > WINDOW_MIN_CELLS);
        this.cells.set(e.id, cell);
        fresh.push(cell);
      } else if (JSON.stringify(cell.entry) !== JSON.stringify(e)) {
        cell.update(e, this.conn.caps.cells[e.id] ?? "---");
      }
    }
    const sameOrder = ids.length === this.order.length && ids.every((id, i) => this.order[i] === id);
    this.order = ids;
    const ordered = ids.map((id) => this.cells.get(id) as CellView);
    ordered.forEach((c, i) => c.setPosition(i + 1));
    this.column.setOrder(ordered);
    const wasWindowed = this.windowed;
    this.setWindowed(ids.length > WINDOW_MIN_CELLS, fresh);
    for (const c of fresh) {
      if (this.windowed && c !== this.active) c.setShell(SHELL_ESTIMATE);
      this.watch(c);
    }
    if (!this.active && ids.length) this.active = this.cells.get(ids[0] as string) as CellView; // selected below
    if (this.windowed) this.updateWindow(); // puts the cells near the screen in the page, in order
    else if (!sameOrder || wasWindowed) this.placeAll();
    if (this.active && !this.active.el.classList.contains("active")) this.select(this.active, false);
    if (!ids.length) this.cellsEl.dataset.empty = "true";
    else delete this.cellsEl.dataset.empty;
    this.renderEmpty();
    this.schedulePresence();
    this.checkReady();
  }

  /** Every cell in the page, in order (a notebook that is not windowed). */
  private placeAll(): void {
    for (const spacer of this.spacers) spacer.remove();
    this.spacers = [];
    // each cell followed by its open comments; the empty-notebook note stays last
    const want: Node[] = [];
    for (const id of this.order) {
      want.push((this.cells.get(id) as CellView).el);
      const panel = this.comments.panelOf(id);
      if (panel) want.push(panel);
    }
    const empty = this.cellsEl.querySelector(".empty-notebook");
    if (empty) want.push(empty);
    this.insertInOrder(want);
  }

  private renderEmpty(): void {
    const existing = this.cellsEl.querySelector(".empty-notebook");
    if (this.order.length) {
      existing?.remove();
      return;
    }
    if (!existing) this.cellsEl.appendChild(h("div", { class: "empty-notebook" }, canWrite(this.conn.caps.notebook) ? "This notebook is empty. Press B or “+ code” to add a cell." : "This notebook is empty."));
  }

  /** `window.hubCollab.readyAt`: when the index and every readable doc were synced and shown. */
  private checkReady(): void {
    if (this.readyMarked || !this.conn.synced.has(INDEX_DOC)) return;
    if (!this.conn.allSynced()) return; // asked after every doc's sync: a walk of the docs here cost 0.8 s for 5,000 cells
    if (this.cells.size !== this.order.length) return;
    this.readyMarked = true;
    const w = window.hubCollab as Record<string, unknown>;
    w.readyAt = performance.now();
    document.body.dataset.ready = "true";
  }

  // -- presence ---------------------------------------------------------------------------------

  private schedulePresence(): void {
    if (this.presenceScheduled) return;
    this.presenceScheduled = true;
    requestAnimationFrame(() => {
      this.presenceScheduled = false;
      this.renderPresence();
    });
  }

  private renderPresence(): void {
    const byCell = new Map<string, { name: string; typing: boolean }[]>();
    const here = new Map<string, PresenceState>();
    const me = this.conn.awareness.clientID;
    this.conn.awareness.getStates().forEach((raw, clientId) => {
      const st = raw as PresenceState;
      const name = st.user?.name;
      if (!name) return;
      if (clientId !== me) {
        if (st.cell) {
          const list = byCell.get(st.cell) ?? [];
          if (!list.some((p) => p.name === name)) list.push({ name, typing: st.status === "editing" });
          byCell.set(st.cell, list);
        }
      }
      if (!here.has(name) || st.cell) here.set(name, st);
    });
    here.set(this.cfg.user.name, here.get(this.cfg.user.name) ?? {});
    for (const cell of this.cells.values()) cell.setPeople(byCell.get(cell.id) ?? []);
    clear(this.avatarsEl);
    for (const [name, st] of [...here.entries()].sort()) {
      const idx = st.cell ? this.order.indexOf(st.cell) : -1;
      const where = idx >= 0 ? ` · in cell ${idx + 1}` : "";
      this.avatarsEl.appendChild(
        h(
          "button",
          { class: `avatar${name === this.cfg.user.name ? " avatar-me" : ""}`, style: `background:${userColor(name)}`, title: `${name}${name === this.cfg.user.name ? " (you)" : ""}${where}`, "data-user": name, onclick: () => st.cell && this.scrollTo(st.cell) },
          initials(name),
        ),
      );
    }
    this.chat.renderTyping();
  }

  /**
   * Follow whether `cell` is near the screen. A cell the browser lays out only near the
   * screen (`content-visibility: auto`: not the active cell nor one with people in it,
   * style.css) says so itself (`contentvisibilityautostatechange`, where the browser has
   * it); only the others are watched by the IntersectionObserver. Watching every cell
   * of a 5,000-cell notebook with both cost Chromium about 40% of each scrolled frame.
   */
  watch(cell: CellView): void {
    if (this.windowed) return; // updateWindow says
    const byBrowser = CV_EVENTS && !cell.el.classList.contains("active") && !cell.el.classList.contains("cell-has-people");
    if (byBrowser && this.observed.has(cell)) {
      this.io.unobserve(cell.el);
      this.observed.delete(cell);
      // the browser tells only changes, and it may not have seen one while the observer
      // watched: count the cell as near until the browser says otherwise
      cell.setVisible(true);
    } else if (!byBrowser && !this.observed.has(cell)) {
      this.io.observe(cell.el);
      this.observed.add(cell);
    }
  }

  /**
   * Windowing, for notebooks of more than WINDOW_MIN_CELLS cells: only the cells on screen
   * or within WINDOW_MARGIN px of it (and the active cell, a markdown cell being edited, a
   * cell whose comments are open, whose kernel asks for input, or that holds the focus) are
   * in the page, whole; each run of the others is one
   * empty box (a spacer) of their heights as last seen (SHELL_ESTIMATE until first shown).
   * Chromium's per-frame work grew with the cells in the page: with 5,000 cells as
   * `content-visibility: auto` boxes about 40 ms a frame; as one empty box each, a layout
   * of the whole page (about 6 ms) once or twice a frame. Where the screen is, in cells, is
   * read from those heights: the spacers are made of the same numbers.
   */
  private setWindowed(on: boolean, fresh: CellView[]): void {
    if (on === this.windowed) return;
    this.windowed = on;
    this.cellsEl.classList.toggle("windowed", on);
    const old = new Set(fresh);
    if (on) {
      for (const c of this.observed) this.io.unobserve(c.el);
      this.observed.clear();
      // cells already in the page keep their height; their boxes are read before any change
      const cells = [...this.cells.values()].filter((c) => !old.has(c) && c !== this.active);
      const heights = cells.map((c) => c.el.offsetHeight);
      cells.forEach((c, i) => {
        this.column.setHeight(c, (heights[i] || SHELL_ESTIMATE) + CELL_GAP);
        c.setVisible(false); // first: an editor it has goes, and with it what it drew (setShell)
        c.setShell(heights[i] || SHELL_ESTIMATE);
      });
      this.near.clear();
    } else {
      for (const c of this.cells.values()) {
        c.setShell(null);
        if (!old.has(c)) this.watch(c);
      }
      for (const c of this.near) this.resizes.unobserve(c.el);
      this.near.clear();
      this.column.clear();
    }
  }

  private scheduleWindow(): void {
    if (!this.windowed || this.windowScheduled) return;
    this.windowScheduled = true;
    requestAnimationFrame(() => this.updateWindow());
  }

  private updateWindow(): void {
    this.windowScheduled = false;
    if (!this.windowed) return;
    // all reads before any change: the heights of what is in the page, and the screen
    for (const c of this.near) {
      const height = c.el.offsetHeight;
      if (height) this.column.setHeight(c, height + CELL_GAP + (this.comments.panelOf(c.id)?.offsetHeight ?? 0));
    }
    const box = this.cellsEl.getBoundingClientRect();
    const style = getComputedStyle(this.cellsEl);
    // the screen in the cells' own coordinates (0: the first cell's top)
    const origin = box.top + parseFloat(style.borderTopWidth) + parseFloat(style.paddingTop) - this.cellsEl.scrollTop;
    const top = Math.max(box.top, 0) - origin - WINDOW_MARGIN;
    const bottom = Math.min(box.bottom, window.innerHeight) - origin + WINDOW_MARGIN;
    const col = this.column;
    const whole = new Set<CellView>();
    for (let i = col.firstEndingAtOrBelow(top); i < col.length && col.top(i) <= bottom; i++) whole.add(col.at(i));
    if (this.active) whole.add(this.active);
    for (const c of this.asking) whole.add(c);
    const focused = document.activeElement;
    for (const c of this.near) if (c.editing || (focused && c.el.contains(focused))) whole.add(c);
    for (const id of this.comments.openIds()) {
      const c = this.cells.get(id);
      if (c) whole.add(c);
    }
    const leaving = [...this.near].filter((c) => !whole.has(c));
    for (const c of leaving) {
      this.near.delete(c);
      this.resizes.unobserve(c.el);
      c.setVisible(false);
      c.setShell(Math.max(col.height(c) - CELL_GAP, 0));
    }
    this.place(whole);
    for (const c of whole) {
      if (this.near.has(c)) continue;
      this.near.add(c);
      c.setShell(null);
      this.resizes.observe(c.el);
      c.setVisible(true);
      c.renderDue(); // in this frame: its layout is the frame's, not a second forced one
    }
  }

  /**
   * Make the page hold `whole` in order, each followed by its open comments, and one
   * spacer for each run of the other cells; what is in the page already stays (a moved
   * element loses its focus and its editor's state).
   */
  private place(whole: Set<CellView>): void {
    const col = this.column;
    // a spacer in the page is kept if it still stands before the same element
    const before = new Map<Node | null, HTMLElement>();
    for (const el of this.spacers) before.set(el.nextSibling, el);
    const want: Node[] = [];
    const spacers: HTMLElement[] = [];
    let end = 0; // where the cells placed so far end (index)
    const spacer = (upTo: number, next: Node | null): void => {
      const run = col.top(upTo) - col.top(end);
      if (!run) return;
      const el = before.get(next) ?? h("div", { class: "cell-spacer", "aria-hidden": "true" });
      before.delete(next);
      const height = `${run}px`;
      if (el.style.height !== height) el.style.height = height;
      want.push(el);
      spacers.push(el);
    };
    const at = [...whole].map((c) => col.indexOf(c)).filter((i) => i !== undefined);
    for (const i of at.sort((a, b) => a - b)) {
      const c = col.at(i);
      spacer(i, c.el);
      end = i + 1;
      want.push(c.el);
      const panel = this.comments.panelOf(c.id);
      if (panel) want.push(panel);
    }
    spacer(col.length, null);
    this.spacers = spacers;
    // what is not wanted goes; what stays is in order unless the cells were reordered
    const keep = new Set<Node>(want);
    for (const node of [...this.cellsEl.childNodes]) if (!keep.has(node)) node.remove();
    this.insertInOrder(want);
  }

  /**
   * Make `want` the children of the cells' box, in order (what else is there is removed
   * first): a node already in order stays. The node holding the focus is never moved (a
   * moved editor loses its focus or its caret: someone else reordering the cells would
   * turn what one types into notebook commands); what stands before it is moved after it
   * instead. Other moves use `moveBefore` where the browser has it (it keeps state).
   */
  private insertInOrder(want: Node[]): void {
    const parent = this.cellsEl as HTMLElement & { moveBefore?: (node: Node, child: Node | null) => void };
    const focused = document.activeElement;
    const move = (node: Node, before: Node | null): void => {
      if (node.parentNode === parent && parent.isConnected && typeof parent.moveBefore === "function") parent.moveBefore(node, before);
      else parent.insertBefore(node, before);
    };
    let at: ChildNode | null = parent.firstChild;
    for (const node of want) {
      if (at === node) {
        at = at.nextSibling;
      } else if (node.parentNode === parent && focused && node.contains(focused)) {
        const after = node.nextSibling;
        for (let n: ChildNode | null = at; n && n !== node; ) {
          const next: ChildNode | null = n.nextSibling;
          move(n, after);
          n = next;
        }
        at = node.nextSibling;
      } else {
        move(node, at);
      }
    }
  }

  /**
   * Give `cell` an editor soon: one at a time, while the page is idle and has not scrolled
   * for 150 ms, at most about 12 ms of editors per idle period. Making an editor makes the
   * browser lay the page out; doing it for every cell scrolled past made scrolling a long
   * notebook stall (long tasks of 100-400 ms).
   */
  wantEditor(cell: CellView): void {
    this.mountQueue.add(cell);
    this.scheduleMounts(0);
  }

  private scheduleMounts(delay: number): void {
    if (this.mountScheduled) return;
    this.mountScheduled = true;
    const idle = (cb: (d: { timeRemaining(): number }) => void): void => {
      if (typeof window.requestIdleCallback === "function") window.requestIdleCallback(cb, { timeout: 1000 });
      else setTimeout(() => cb({ timeRemaining: () => 10 }), 0);
    };
    setTimeout(() => idle((deadline) => this.mountSome(deadline)), delay);
  }

  private mountSome(deadline: { timeRemaining(): number }): void {
    this.mountScheduled = false;
    const quiet = performance.now() - this.lastScroll;
    if (quiet < 150 || this.pointerDown) {
      this.scheduleMounts(Math.max(150 - quiet, 50));
      return;
    }
    const start = performance.now();
    for (const cell of this.mountQueue) {
      this.mountQueue.delete(cell);
      if (cell.visible && this.cells.get(cell.id) === cell) cell.mount();
      if (performance.now() - start > 12 || deadline.timeRemaining() < 4) break;
    }
    if (this.mountQueue.size) this.scheduleMounts(0);
  }

  scrollTo(cellId: string): void {
    const cell = this.cells.get(cellId);
    if (!cell) {
      toast("That cell is not in this notebook (any more).");
      return;
    }
    this.select(cell, false); // first: a windowed notebook puts it in the page
    // at once in a windowed notebook: on a smooth way there, the cells passed would come
    // whole at their real heights and push the target off the spot it was headed for
    cell.el.scrollIntoView({ block: "center", behavior: this.windowed ? "auto" : "smooth" });
    cell.el.classList.add("flash");
    setTimeout(() => cell.el.classList.remove("flash"), 1200);
  }

  // -- selection and modes ----------------------------------------------------------------------

  select(cell: CellView, edit: boolean): void {
    if (this.cells.get(cell.id) !== cell) return; // deleted meanwhile
    if (this.active && this.active !== cell) {
      this.active.el.classList.remove("active");
      this.active.el.tabIndex = -1;
      if (this.active.isMarkdown && this.active.editing) this.active.stopEditing();
    }
    const before = this.active;
    this.active = cell;
    cell.el.classList.add("active");
    // the active cell is the one Tab stop of the cells themselves (a roving tabindex, as in
    // JupyterLab): Tab reaches it (command mode; Enter edits), then its controls; its editor
    // is no Tab stop (cell.ts)
    cell.el.tabIndex = 0;
    if (before && before !== cell) this.watch(before);
    this.watch(cell);
    // kept whole and in the page while active, at once: it may be scrolled to or focused next
    if (this.windowed && !this.near.has(cell)) this.updateWindow();
    this.mode = edit ? "edit" : this.mode === "edit" && cell.view?.hasFocus ? "edit" : edit ? "edit" : "command";
    document.body.dataset.mode = this.mode;
    this.typeSelect.value = cell.entry.cell_type;
    if (edit) this.conn.setPresence({ cell: cell.id });
    else this.conn.setPresence({ cell: cell.id, cursor: null });
  }

  commandMode(cell: CellView): void {
    this.mode = "command";
    document.body.dataset.mode = "command";
    cell.view?.contentDOM.blur();
    if (cell.isMarkdown) cell.stopEditing();
    cell.el.focus({ preventScroll: true });
  }

  private neighbour(delta: number): CellView | null {
    if (!this.active) return null;
    const i = this.order.indexOf(this.active.id);
    const id = this.order[i + delta];
    return id ? (this.cells.get(id) ?? null) : null;
  }

  private onKey(e: KeyboardEvent): void {
    const target = e.target as HTMLElement | null;
    if (target && (target.closest(".cm-editor") || target.closest("input, textarea, select, dialog, .chat"))) return;
    if (target?.closest("button, a[href]") && (e.key === "Enter" || e.key === " ")) return; // the key presses the button, follows the link
    if (e.altKey || (e.metaKey && e.key !== "Enter")) return;
    const cell = this.active;
    const key = e.key;
    const go = (c: CellView | null): void => {
      if (c) {
        this.select(c, false);
        c.el.focus({ preventScroll: true });
        c.el.scrollIntoView({ block: "nearest" });
      }
    };
    let handled = true;
    if (key === "Enter" && e.shiftKey && cell) this.runCell(cell, "advance");
    else if (key === "Enter" && e.ctrlKey && cell) this.runCell(cell, "stay");
    else if (key === "Enter" && cell) cell.focusEditor();
    else if (e.ctrlKey && e.shiftKey && key === "ArrowUp" && cell) void this.move(cell, -1);
    else if (e.ctrlKey && e.shiftKey && key === "ArrowDown" && cell) void this.move(cell, 1);
    else if (e.ctrlKey) handled = false;
    else if (key === "ArrowUp" || key === "k") go(this.neighbour(-1));
    else if (key === "ArrowDown" || key === "j") go(this.neighbour(1));
    else if (key === "a") void this.insert("above", "code");
    else if (key === "b") void this.insert("below", "code");
    else if (key === "m" && cell) void this.setType(cell, "markdown");
    else if (key === "y" && cell) void this.setType(cell, "code");
    else if (key === "r" && cell) void this.setType(cell, "raw");
    else if (key === "d" && cell) {
      const now = Date.now();
      if (now - this.lastD < 800) {
        this.lastD = 0;
        void this.deleteCell(cell);
      } else this.lastD = now;
    } else if (key === "i") {
      const now = Date.now();
      if (now - this.lastD < 800) void this.cmd("interrupt");
      this.lastD = now;
    } else if (key === "0") {
      const now = Date.now();
      if (now - this.lastD < 800) void this.restart();
      this.lastD = now;
    } else handled = false;
    if (handled) e.preventDefault();
  }

  // -- commands ---------------------------------------------------------------------------------

  async cmd(type: string, fields: Json = {}): Promise<Json | null> {
    try {
      return await this.conn.command(type, fields);
    } catch (err) {
      const e = err as CommandError;
      toast(e.message || String(err), "error");
      return null;
    }
  }

  runCell(cell: CellView, then: "advance" | "stay" | "insert"): void {
    if (cell.isMarkdown) cell.stopEditing();
    else if (cell.entry.cell_type === "code") {
      if (!canExec(this.conn.caps.notebook) || !canExec(cell.rwx)) toast(`You may not run this cell (notebook ${this.conn.caps.notebook}, cell ${cell.rwx}).`, "error");
      else void this.cmd("execute", { cell_id: cell.id, source_hash: cell.sourceHash() });
    }
    if (then === "advance") {
      const next = this.neighbour(1);
      if (next) {
        this.select(next, false);
        if (this.mode === "edit" && !next.isMarkdown) next.focusEditor();
        else this.commandMode(next);
        next.el.scrollIntoView({ block: "nearest" });
      } else if (canWrite(this.conn.caps.notebook)) void this.insert("below", "code", true);
      else this.commandMode(cell);
    } else if (then === "insert") void this.insert("below", "code", true);
  }

  async insert(where: "above" | "below", cellType: string, focus = true): Promise<void> {
    if (!canWrite(this.conn.caps.notebook)) {
      toast("You may not add cells to this notebook.", "error");
      return;
    }
    let index = this.order.length;
    if (this.active) {
      const i = this.order.indexOf(this.active.id);
      if (i >= 0) index = where === "above" ? i : i + 1;
    }
    const from = this.active;
    const mode = this.mode;
    const focused = document.activeElement;
    const ack = await this.cmd("insert_cell", { index, cell_type: cellType });
    if (!ack) return;
    const id = String(ack.cell_id);
    // the index update and the new caps arrive before the ack
    const cell = this.cells.get(id);
    // who went on while the ack was on its way (another cell, the cell's editor, a dialog,
    // the toolbar) keeps the selection and the focus: the new cell is there, but does not
    // take them. Not going on: the first cell of an empty notebook selected as it arrives,
    // focus fallen back to the body (a markdown editor closed by Shift-Enter), an editor
    // made again in the same cell (its doc arriving).
    const now = document.activeElement;
    const elsewhere = now !== null && now !== document.body && now !== focused && !from?.el.contains(now);
    const wentOn = (this.active !== from && this.active !== cell) || this.mode !== mode || elsewhere;
    if (!cell || wentOn) return;
    this.select(cell, focus);
    cell.el.scrollIntoView({ block: "nearest" });
    if (focus) setTimeout(() => this.active === cell && cell.focusEditor(), 0);
  }

  async deleteCell(cell: CellView): Promise<void> {
    const next = this.neighbour(1) ?? this.neighbour(-1);
    const ok = await this.cmd("delete_cell", { cell_id: cell.id });
    if (ok && next) this.select(next, false);
  }

  async move(cell: CellView, delta: number): Promise<void> {
    const i = this.order.indexOf(cell.id);
    const j = i + delta;
    if (j < 0 || j >= this.order.length) return;
    await this.cmd("move_cell", { cell_id: cell.id, index: j });
    cell.el.scrollIntoView({ block: "nearest" });
  }

  async setType(cell: CellView, t: string): Promise<void> {
    if (cell.entry.cell_type === t) return;
    await this.cmd("set_cell_type", { cell_id: cell.id, cell_type: t });
  }

  async restart(): Promise<void> {
    const sure = await confirmDialog({ title: "Restart the kernel?", message: "Every variable is lost, for everyone in this notebook.", confirm: "Restart", danger: true });
    if (!sure) return;
    await this.cmd("restart");
  }

  inputReply(cell: CellView, value: string): void {
    void this.cmd("input_reply", { cell_id: cell.id, value });
  }

  exportIpynb(): void {
    const a = h("a", { href: this.api.url(`api/notebooks/${this.cfg.notebook}/ipynb?download=1&_xsrf=${encodeURIComponent(this.cfg.xsrf)}`), download: "" });
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // -- sharing ----------------------------------------------------------------------------------

  canChmodCell(cell: CellView): boolean {
    const caps = this.conn.caps;
    return !!(caps.owner || caps.admin || cell.entry.owner === this.cfg.user.name);
  }

  async openShare(): Promise<void> {
    await new ShareDialog(this, null).open();
  }

  openCellShare(cell: CellView): void {
    void new ShareDialog(this, cell).open();
  }

  openCellHistory(cell: CellView): void {
    void new CellHistoryDialog(this, cell).open();
  }
}
