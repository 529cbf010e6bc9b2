/**
 * One cell of the notebook page: a CodeMirror 6 editor bound to the `source`
 * Y.Text of `cell:<id>` (mounted lazily, when the cell nears the viewport),
 * rendered markdown, outputs from `out:<id>`, the execution prompt and state,
 * badges for locked and hidden cells, and who is in the cell.
 */
import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { markdown } from "@codemirror/lang-markdown";
import { python } from "@codemirror/lang-python";
import { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting } from "@codemirror/language";
import { Compartment, EditorState, type Extension, Prec, StateEffect } from "@codemirror/state";
import { Decoration, type DecorationSet, EditorView, ViewPlugin, type ViewUpdate, drawSelection, keymap, placeholder } from "@codemirror/view";
import { digest } from "lib0/hash/sha256";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";
import * as Y from "yjs";

import { capsBadge, rightsInWords } from "./permissions";
import { canRead, canWrite, canExec, cellDoc, outDoc } from "./protocol";
import { cursorJson, remoteCursors } from "./cursors";
import { h, clear, timeAgo, userColor, initials } from "./dom";
import { icon } from "./icons";
import { renderMarkdown, renderOutput, type OutputModel } from "./render";
import { highlightPython } from "./highlight";
import { type WidgetHolder, widgetRef } from "./widgets";
import type { NotebookView } from "./notebook";

export interface IndexEntry {
  id: string;
  cell_type: string;
  owner: string;
  group: string;
  mode: string;
  acl: string[];
}

const sharedTheme = EditorView.theme({
  "&": { fontSize: "14px" },
  ".cm-content": { fontFamily: "var(--mono)", padding: "6px 0" },
  // where the keyboard is, drawn as on every other control (style.css :focus-visible)
  "&.cm-focused": { outline: "2px solid var(--accent)", outlineOffset: "1px" },
});

/** A commented range of a cell's source, and the signal that the threads changed. */
const COMMENTED = Decoration.mark({ class: "cm-comment-range", attributes: { title: "commented: see the comments on this cell" } });
const refreshRanges = StateEffect.define<null>();

/** What a whole cell shows, made by CellView.build. */
interface CellParts {
  prompt: HTMLElement;
  badges: HTMLElement;
  people: HTMLElement;
  editorHost: HTMLElement;
  preview: HTMLElement;
  rendered: HTMLElement;
  outputs: HTMLElement;
  info: HTMLElement;
  inputBox: HTMLElement;
  /** the cell element's children */
  children: HTMLElement[];
}

export class CellView {
  readonly el: HTMLElement;
  entry: IndexEntry;
  rwx = "---";
  view: EditorView | null = null;
  ytext: Y.Text | null = null;
  outDoc: Y.Doc | null = null;
  visible = false;
  editing = false; // markdown: showing the editor
  // The cell's contents, made by build(): at once, or for a cell of a windowed notebook
  // (NotebookView.updateWindow) when it comes near the screen, and let go of when it goes
  // far again (setShell). Without them the cell is its box only, and what would be drawn
  // is drawn by build().
  private ui: CellParts | null = null;
  /** who is in the cell, as last told (drawn by build() if told before) */
  private peopleNow: { name: string; typing: boolean }[] = [];
  private readOnly = new Compartment();
  private outScheduled = false;
  private srcScheduled = false;
  /** a render is due (scheduled for the next frame, or done at once by renderDue) */
  private outDirty = false;
  private srcDirty = false;
  private unbind: (() => void)[] = [];
  private outUnbind: (() => void) | null = null;
  /** the views of widgets this cell's outputs show, by model id (kept across re-renders) */
  private widgetViews = new Map<string, WidgetHolder>();
  private typingTimer: ReturnType<typeof setTimeout> | null = null;
  private shell = false;
  /** where the cell is in the notebook (1: the first), as its name says */
  private position = 0;

  /** `lazy`: the cell's contents are made when it is first whole (see build). */
  constructor(
    private nb: NotebookView,
    entry: IndexEntry,
    lazy = false,
  ) {
    this.entry = entry;
    // a group named for what it is and where (a screen reader says "code cell 3" on the
    // selected cell, the cells' Tab stop); the name follows its place (setPosition)
    this.el = h("div", { class: "cell", "data-cell-id": entry.id, tabindex: "-1", role: "group" });
    this.el.addEventListener("mousedown", () => this.nb.select(this, false));
    // near the screen or not, as the browser lays it out (NotebookView.watch)
    this.el.addEventListener("contentvisibilityautostatechange", (e) => this.setVisible(!(e as Event & { skipped: boolean }).skipped));
    this.update(entry, nb.conn.caps.cells[entry.id] ?? "---");
    if (!lazy) this.build();
  }

  /** Make the cell's contents (once) and draw what is due in them. */
  private build(): CellParts {
    if (this.ui) return this.ui;
    const prompt = h("div", { class: "cell-prompt" });
    const badges = h("div", { class: "cell-badges" });
    const people = h("div", { class: "cell-people" });
    const editorHost = h("div", { class: "cell-editor" });
    const preview = h("pre", { class: "cell-preview" });
    const rendered = h("div", { class: "cell-rendered markdown-body", title: "Double-click to edit" });
    const outputs = h("div", { class: "cell-outputs" });
    const info = h("div", { class: "cell-info" });
    const inputBox = h("div", { class: "cell-input-request" });
    const body = h("div", { class: "cell-body" }, editorHost, preview, rendered);
    const side = h("div", { class: "cell-side" }, prompt, people);
    const children = [side, h("div", { class: "cell-main" }, h("div", { class: "cell-head" }, badges, info), body, inputBox, outputs)];
    const ui = (this.ui = { prompt, badges, people, editorHost, preview, rendered, outputs, info, inputBox, children });
    if (!this.shell) this.el.replaceChildren(...children);
    rendered.addEventListener("dblclick", () => {
      if (canWrite(this.rwx)) this.startEditing(true);
    });
    // the editor comes at the press itself, with the caret where it was pressed: an editor
    // made between the press and the release (wantEditor) would take the release instead
    preview.addEventListener("mousedown", (e) => {
      if (e.button !== 0 || preview.classList.contains("hidden-placeholder")) return;
      e.preventDefault();
      this.mount();
      const view = this.view;
      if (!view) return;
      const pos = view.posAtCoords({ x: e.clientX, y: e.clientY });
      view.focus();
      if (pos !== null) view.dispatch({ selection: { anchor: pos } });
    });
    this.nb.comments.attach(this, side);
    this.drawEntry(false, false);
    this.setPeople(this.peopleNow);
    this.scheduleSource();
    this.scheduleOutputs();
    return ui;
  }

  /** The cell is the `n`th of the notebook (1: the first). */
  setPosition(n: number): void {
    if (n === this.position) return;
    this.position = n;
    this.name();
  }

  private name(): void {
    const label = `${this.entry.cell_type} cell${this.position ? ` ${this.position}` : ""}`;
    if (this.el.getAttribute("aria-label") !== label) this.el.setAttribute("aria-label", label);
  }

  get id(): string {
    return this.entry.id;
  }

  get isMarkdown(): boolean {
    return this.entry.cell_type === "markdown";
  }

  /** The index entry or the caps changed. */
  update(entry: IndexEntry, rwx: string): void {
    const typeChanged = entry.cell_type !== this.entry.cell_type;
    const capsChanged = rwx !== this.rwx;
    this.entry = entry;
    this.rwx = rwx;
    this.el.classList.toggle("cell-code", entry.cell_type === "code");
    this.el.classList.toggle("cell-markdown", entry.cell_type === "markdown");
    this.el.classList.toggle("cell-raw", entry.cell_type === "raw");
    this.el.classList.toggle("cell-hidden", !canRead(rwx));
    this.el.classList.toggle("cell-locked", canRead(rwx) && !canWrite(rwx));
    this.el.dataset.type = entry.cell_type;
    this.name();
    this.el.dataset.rwx = rwx;
    if (!canRead(rwx)) {
      this.unmount();
      this.detachDocs();
    } else {
      this.attachDocs();
    }
    if (this.ui) this.drawEntry(typeChanged, capsChanged);
  }

  /** Draw the index entry and the caps in the cell's contents. */
  private drawEntry(typeChanged: boolean, capsChanged: boolean): void {
    const ui = this.ui;
    if (!ui) return;
    this.renderBadges(ui.badges);
    if (!canRead(this.rwx)) {
      const entry = this.entry;
      clear(ui.preview);
      ui.preview.textContent = `Hidden cell: you may not see it (owner ${entry.owner}, mode ${entry.mode}).`;
      ui.preview.classList.add("hidden-placeholder");
      ui.rendered.hidden = true;
      ui.editorHost.hidden = true;
      ui.preview.hidden = false;
      clear(ui.outputs);
      clear(ui.info);
      ui.prompt.textContent = "";
      return;
    }
    ui.preview.classList.remove("hidden-placeholder");
    if (typeChanged && this.view) {
      this.unmount();
      if (this.visible) this.mount(); // it had an editor: it gets one back at once
    } else if (capsChanged && this.view) {
      this.view.dispatch({ effects: this.readOnly.reconfigure(this.readOnlyExt()) });
    }
    this.layout();
  }

  private renderBadges(badges: HTMLElement): void {
    clear(badges);
    const b = capsBadge(this.rwx);
    if (b) badges.appendChild(h("span", { class: `badge badge-${b.label}`, title: b.title }, b.label === "locked" ? icon("lock") : null, b.label));
    if (canRead(this.rwx) && !canExec(this.rwx) && this.entry.cell_type === "code") badges.appendChild(h("span", { class: "badge badge-noexec", title: `you ${rightsInWords(this.rwx, "cell")}` }, "no run"));
    if (canRead(this.rwx)) {
      badges.appendChild(h("button", { type: "button", class: "link cell-history", title: "Versions of this cell: who changed it and when; restore one", "aria-label": "history of this cell", onclick: (e: Event) => { e.stopPropagation(); this.nb.openCellHistory(this); } }, "history"));
    }
    if (this.nb.canChmodCell(this)) {
      badges.appendChild(h("button", { class: "link cell-share", title: `Permissions of this cell: ${this.entry.mode}`, onclick: (e: Event) => { e.stopPropagation(); this.nb.openCellShare(this); } }, `share · ${this.entry.mode}`));
    }
  }

  // -- docs -------------------------------------------------------------------------------------

  /** Bind to the held docs (again after a `resync` replaced them). */
  attachDocs(): void {
    const cdoc = this.nb.conn.docs.get(cellDoc(this.id));
    const ytext = cdoc ? cdoc.getText("source") : null;
    if (ytext !== this.ytext) {
      for (const u of this.unbind) u();
      this.unbind = [];
      const hadEditor = !!this.view;
      const hadFocus = this.view?.hasFocus ?? false;
      this.unmount();
      this.ytext = ytext;
      if (ytext) {
        const obs = (): void => this.scheduleSource();
        ytext.observe(obs);
        this.unbind.push(() => ytext.unobserve(obs));
      }
      if (hadEditor && ytext) {
        this.mount();
        if (hadFocus) this.view?.focus();
      }
      this.scheduleSource();
    }
    const odoc = this.nb.conn.docs.get(outDoc(this.id)) ?? null;
    if (odoc !== this.outDoc) {
      this.outUnbind?.();
      this.outUnbind = null;
      this.outDoc = odoc;
      this.nb.widgets.attach(this.id, odoc);
      if (odoc) {
        const obs = (): void => this.scheduleOutputs();
        const outs = odoc.getArray("outputs");
        const state = odoc.getMap("state");
        outs.observeDeep(obs);
        state.observe(obs);
        this.outUnbind = () => {
          outs.unobserveDeep(obs);
          state.unobserve(obs);
        };
      }
      this.scheduleOutputs();
    }
  }

  private detachDocs(): void {
    for (const u of this.unbind) u();
    this.unbind = [];
    this.outUnbind?.();
    this.outUnbind = null;
    this.ytext = null;
    this.outDoc = null;
    this.nb.widgets.attach(this.id, null);
    for (const v of this.widgetViews.values()) v.dispose();
    this.widgetViews.clear();
  }

  source(): string {
    return this.ytext ? this.ytext.toString() : "";
  }

  sourceHash(): string {
    const bytes = digest(new TextEncoder().encode(this.source()));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- visibility and layout --------------------------------------------------------------------

  /**
   * A windowed notebook's far cell (`height`): only its box, of that height, in the page,
   * its contents let go of; null: whole again.
   */
  setShell(height: number | null): void {
    if ((height !== null) === this.shell) return;
    this.shell = height !== null;
    this.el.classList.toggle("shell", this.shell);
    if (height === null) {
      this.el.style.height = "";
      if (this.ui) this.el.replaceChildren(...this.ui.children);
      else this.build();
      return;
    }
    this.el.style.height = `${height}px`;
    const ui = this.ui;
    if (!ui) return; // nothing in it yet
    this.el.replaceChildren();
    // What a far cell held is drawn again when it comes back anyway (build, renderDue):
    // letting go of it keeps the heap as small after scrolling through a long notebook as
    // before (5,900 DOM nodes alive instead of 115,000 for 5,000 cells), and with it the
    // collector's pauses while scrolling. The widgets' views stay in widgetViews, live,
    // and are put back; taken out of the outputs first, they hold nothing of the rest.
    this.srcDirty = this.outDirty = true;
    ui.outputs.replaceChildren();
    if (!this.view && !this.editing && !ui.inputBox.hasChildNodes()) {
      this.nb.comments.detachButton(this.id);
      this.ui = null;
      return;
    }
    // (an editor that is kept, or an input prompt: only what is drawn again goes)
    if (!this.view) ui.preview.replaceChildren();
    if (this.isMarkdown && !this.editing) ui.rendered.replaceChildren();
  }

  setVisible(v: boolean): void {
    if (v === this.visible) return;
    this.visible = v;
    if (v) {
      this.build();
      // an editor is made only while the page is idle and not scrolling (Notebook.wantEditor):
      // until then the preview shows the same text, coloured the same way
      if (this.editing || this.nb.active === this) this.mount();
      else if (!this.isMarkdown) this.nb.wantEditor(this);
      this.scheduleSource();
      this.scheduleOutputs();
    } else if (this.view && !this.view.hasFocus && this.nb.active !== this && !this.editing) {
      // Every editor listens to the page's scroll and selection events: keeping the
      // editors of cells far off screen made scrolling a long notebook slower and
      // slower. The preview shows the same text until the cell comes back.
      this.unmount();
    }
  }

  private layout(): void {
    const ui = this.ui;
    if (!ui) return;
    const readable = canRead(this.rwx);
    const showRendered = readable && this.isMarkdown && !this.editing;
    ui.rendered.hidden = !showRendered;
    ui.editorHost.hidden = !readable || showRendered || !this.view;
    ui.preview.hidden = readable && (showRendered || !!this.view);
  }

  private readOnlyExt(): Extension {
    // still focusable and selectable (copying, showing the cursor to others), never editable
    return EditorState.readOnly.of(!canWrite(this.rwx));
  }

  /** Create the editor (idempotent). */
  mount(): void {
    if (this.view || !this.ytext || !canRead(this.rwx)) return;
    const ui = this.build();
    void this.nb.comments.ensureThreads(this.id);
    const ytext = this.ytext;
    const undoManager = new Y.UndoManager(ytext);
    const conn = this.nb.conn;
    const keys = Prec.highest(
      keymap.of([
        { key: "Shift-Enter", run: () => (this.nb.runCell(this, "advance"), true) },
        { key: "Mod-Enter", run: () => (this.nb.runCell(this, "stay"), true) },
        { key: "Alt-Enter", run: () => (this.nb.runCell(this, "insert"), true) },
        {
          key: "Escape",
          run: () => {
            this.nb.commandMode(this);
            return true;
          },
        },
      ]),
    );
    const state = EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keys,
        keymap.of([...yUndoManagerKeymap, indentWithTab, ...defaultKeymap]),
        drawSelection(),
        bracketMatching(),
        indentOnInput(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        this.entry.cell_type === "code" ? python() : this.entry.cell_type === "markdown" ? markdown() : [],
        placeholder(this.entry.cell_type === "markdown" ? "Markdown" : this.entry.cell_type === "raw" ? "Raw text" : "Code"),
        sharedTheme,
        EditorView.lineWrapping,
        // not a Tab stop (Jupyter's modes): Tab indents in it, so Tab into it was a trap; it is
        // entered with Enter on its cell (command mode) or a click, left with Esc
        EditorView.contentAttributes.of({ "aria-label": `${this.entry.cell_type} cell source`, tabindex: "-1" }),
        this.readOnly.of(this.readOnlyExt()),
        yCollab(ytext, null, { undoManager }),
        remoteCursors(conn.awareness, this.id, ytext),
        this.commentRanges(),
        EditorView.updateListener.of((u) => {
          if (u.focusChanged && u.view.hasFocus) this.nb.select(this, true);
          if (u.view.hasFocus && (u.selectionSet || u.docChanged || u.focusChanged)) {
            const sel = u.state.selection.main;
            conn.setPresence({ cell: this.id, cursor: cursorJson(ytext, sel.anchor, sel.head) });
          }
          if (u.docChanged && u.transactions.some((t) => t.isUserEvent("input") || t.isUserEvent("delete"))) {
            if (!canWrite(this.rwx)) return;
            conn.setPresence({ status: "editing" });
            if (this.typingTimer) clearTimeout(this.typingTimer);
            this.typingTimer = setTimeout(() => conn.setPresence({ status: undefined }), 2000);
          }
        }),
        EditorState.transactionFilter.of((tr) => {
          // a locked cell: refuse local edits before they reach the Y.Text
          if (tr.docChanged && !canWrite(this.rwx) && tr.isUserEvent("input")) return [];
          return tr;
        }),
      ],
    });
    this.view = new EditorView({ state, parent: ui.editorHost });
    this.layout();
  }

  /** Marks the ranges open comment threads are anchored to (docs/comments.md). */
  private commentRanges(): ViewPlugin<{ decorations: DecorationSet }> {
    // clamped: the editor's text and the shared one differ for a moment while an edit goes between them
    const ranges = (len: number): DecorationSet =>
      Decoration.set(
        this.nb.comments
          .rangesOf(this.id)
          .filter((r) => r.from < len)
          .map((r) => COMMENTED.range(r.from, Math.min(r.to, len))),
        true,
      );
    return ViewPlugin.define(
      (view) => ({
        decorations: ranges(view.state.doc.length),
        update(u: ViewUpdate) {
          if (u.docChanged || u.transactions.some((t) => t.effects.some((e) => e.is(refreshRanges)))) this.decorations = ranges(u.state.doc.length);
        },
      }),
      { decorations: (v) => v.decorations },
    );
  }

  /** The threads of this cell changed: mark their ranges again. */
  refreshCommentRanges(): void {
    this.view?.dispatch({ effects: refreshRanges.of(null) });
  }

  unmount(): void {
    if (!this.view) return;
    this.view.destroy();
    this.view = null;
    this.ui?.editorHost.replaceChildren();
    this.layout();
  }

  focusEditor(): void {
    if (this.isMarkdown) this.startEditing(true);
    else {
      this.mount();
      this.view?.focus();
    }
  }

  startEditing(focus: boolean): void {
    this.editing = true;
    this.mount();
    this.layout();
    if (focus) this.view?.focus();
  }

  /** Markdown: show the rendered text again. */
  stopEditing(): void {
    if (!this.isMarkdown) return;
    this.editing = false;
    this.scheduleSource();
    this.layout();
  }

  // -- rendering --------------------------------------------------------------------------------

  private scheduleSource(): void {
    this.srcDirty = true;
    if (this.srcScheduled || !this.ui) return; // build() draws it (5,000 frames' callbacks saved on a load)
    this.srcScheduled = true;
    requestAnimationFrame(() => {
      this.srcScheduled = false;
      if (this.srcDirty) this.renderSource();
    });
  }

  /**
   * Render now what is due (source, outputs) instead of at the next frame: a windowed
   * notebook does it as it brings the cell back, so the frame lays it out once.
   */
  renderDue(): void {
    if (this.srcDirty) this.renderSource();
    if (this.outDirty) this.renderOutputs();
  }

  renderSource(): void {
    const ui = this.ui;
    if (!ui) return; // drawn by build
    this.srcDirty = false;
    if (!canRead(this.rwx)) return;
    const src = this.source();
    if (this.isMarkdown) {
      if (this.visible || !ui.rendered.hasChildNodes()) {
        if (this.visible) ui.rendered.innerHTML = src.trim() ? renderMarkdown(window, src) : '<p class="empty-md">Empty markdown cell: double-click to write.</p>';
        else ui.rendered.textContent = src;
      }
    }
    if (!this.view) {
      if (this.visible && src && this.entry.cell_type === "code") highlightPython(ui.preview, src);
      else ui.preview.textContent = src || "\u200b";
    }
    this.layout();
  }

  private scheduleOutputs(): void {
    this.outDirty = true;
    if (this.outScheduled || !this.ui) return; // build() draws them
    this.outScheduled = true;
    requestAnimationFrame(() => {
      this.outScheduled = false;
      if (this.outDirty) this.renderOutputs();
    });
  }

  state(): Record<string, unknown> {
    return this.outDoc ? (this.outDoc.getMap("state").toJSON() as Record<string, unknown>) : {};
  }

  renderOutputs(): void {
    const ui = this.ui;
    if (!canRead(this.rwx) || !ui) return; // not built: drawn by build
    const st = this.state();
    const es = String(st.execution_state ?? "idle");
    this.el.dataset.state = es;
    this.outDirty = false;
    if (this.entry.cell_type === "code") {
      const count = st.execution_count;
      ui.prompt.textContent = es === "running" ? "[*]:" : es === "queued" ? "[…]:" : `[${count ?? " "}]:`;
      ui.prompt.title = es;
    } else ui.prompt.textContent = "";
    clear(ui.info);
    if (st.executed_by) {
      const who = String(st.executed_by);
      const when = es === "idle" ? timeAgo(st.ended_at as number) : es === "running" ? `running since ${timeAgo(st.started_at as number)}` : "queued";
      const dur = typeof st.started_at === "number" && typeof st.ended_at === "number" ? ` · ${(st.ended_at - st.started_at).toFixed(2)} s` : "";
      const status = st.status && st.status !== "ok" ? ` · ${String(st.status)}` : "";
      ui.info.appendChild(h("span", { class: `exec-info exec-${es}` }, `${es === "idle" ? "run" : es} by ${who}${es === "idle" ? " · " + when : ""}${dur}${status}`));
      if (es !== "idle") ui.info.appendChild(h("span", { class: "spinner", "aria-hidden": "true" }));
    }
    if (!this.visible && ui.outputs.hasChildNodes() === false && !this.nb.renderAll) return;
    clear(ui.outputs);
    if (!this.outDoc) return;
    const arr = this.outDoc.getArray<Y.Map<unknown>>("outputs");
    const shown = new Map<string, WidgetHolder>();
    for (const m of arr) {
      const model = (m instanceof Y.Map ? m.toJSON() : m) as OutputModel;
      const id = widgetRef(model);
      if (id !== null && !shown.has(id)) {
        // the same live view as before: a widget in use is not rebuilt under the pointer
        const view = this.widgetViews.get(id) ?? this.nb.widgets.view(id);
        shown.set(id, view);
        ui.outputs.appendChild(view.el);
      } else ui.outputs.appendChild(renderOutput(window, model));
    }
    for (const [id, view] of this.widgetViews) if (!shown.has(id)) view.dispose();
    this.widgetViews = shown;
    if (st.truncated) ui.outputs.appendChild(h("div", { class: "output-notice" }, "Output truncated."));
  }

  /** Who is in this cell (from awareness). */
  setPeople(names: { name: string; typing: boolean }[]): void {
    this.peopleNow = names;
    const box = this.ui?.people;
    if (box) {
      clear(box);
      for (const p of names) {
        box.appendChild(h("span", { class: "avatar avatar-small", style: `background:${userColor(p.name)}`, title: `${p.name} is ${p.typing ? "editing" : "in"} this cell` }, initials(p.name)));
      }
    }
    if (this.el.classList.contains("cell-has-people") !== names.length > 0) {
      this.el.classList.toggle("cell-has-people", names.length > 0);
      this.nb.watch(this);
    }
  }

  /** The kernel asks this user for input (`input_request`), or someone else (`input_waiting`). */
  showInput(req: { prompt?: string; password?: boolean; user?: string } | null, mine: boolean): void {
    if (!req && !this.ui) return;
    const box = this.build().inputBox;
    clear(box);
    if (!req) return;
    if (!mine) {
      box.appendChild(h("div", { class: "input-waiting" }, `Waiting for ${req.user ?? "someone"} to answer an input prompt…`));
      return;
    }
    const field = h("input", { type: req.password ? "password" : "text", class: "input-field", "aria-label": req.prompt || "input" });
    const form = h("form", { class: "input-form" }, h("label", {}, req.prompt || "Input: "), field, h("button", { type: "submit" }, "Send"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.nb.inputReply(this, field.value);
      clear(box);
    });
    box.appendChild(form);
    field.focus();
  }

  destroy(): void {
    this.unmount();
    this.detachDocs();
    this.el.remove();
  }
}
