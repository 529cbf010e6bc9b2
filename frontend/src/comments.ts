/**
 * Comment threads in the cell margin (docs/comments.md): a button per cell with the
 * number of threads and an unread badge, a panel below the cell with its threads
 * (reply, resolve/reopen, edit and delete your own, moderation for the owner and
 * admins), a form to open a thread on the cell or on the text selected in its editor
 * (a range anchored with Yjs relative positions, so it follows every edit), and the
 * notices (mentions, replies to your threads) behind a toolbar button.
 *
 * Everything is keyboard reachable (real buttons and forms, Escape closes), nothing
 * uses prompt() or confirm(), and every text is rendered as text.
 */
import * as Y from "yjs";

import type { Json } from "./connection";
import { h, clear, timeAgo, userColor, toast } from "./dom";
import { icon } from "./icons";
import type { CellView } from "./cell";
import type { NotebookView } from "./notebook";
import { canRead, canWrite } from "./protocol";

export interface Comment {
  id: number;
  thread_id: number;
  cell_id: string;
  author: string;
  text: string;
  created_at: number;
  edited_at: number | null;
  deleted: boolean;
  mentions: string[];
  mentioned: boolean;
}

export interface Thread {
  id: number;
  cell_id: string;
  author: string;
  created_at: number;
  resolved: boolean;
  resolved_by: string | null;
  cell_deleted: boolean;
  anchor: { start: string; end: string; quote: string } | null;
  range: { start: number; end: number } | null;
  comments?: Comment[];
}

export interface Notice {
  id: number;
  kind: "mention" | "reply";
  cell_id: string;
  thread_id: number;
  comment_id: number;
  author: string;
  text: string;
  unread: boolean;
}

interface Counts {
  threads: number;
  open: number;
  unread: number;
}

function b64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function unb64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** The anchor of a selection [from, to) of a cell's Y.Text, as the server takes it. */
export function anchorFor(ytext: Y.Text, from: number, to: number): { start: string; end: string } {
  const start = Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(ytext, from, 0));
  const end = Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(ytext, to, -1));
  return { start: b64(start), end: b64(end) };
}

/** Where an anchor is now in the local doc (UTF-16 indexes, as CodeMirror's), or null. */
export function rangeOf(doc: Y.Doc, anchor: { start: string; end: string }): { from: number; to: number } | null {
  const a = Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(unb64(anchor.start)), doc);
  const b = Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(unb64(anchor.end)), doc);
  if (!a || !b) return null;
  return { from: a.index, to: Math.max(a.index, b.index) };
}

export class Comments {
  readonly bell: HTMLButtonElement;
  readonly bellList: HTMLElement;
  private threads = new Map<number, Thread>();
  private comments = new Map<number, Comment>();
  private counts = new Map<string, Counts>();
  private notices = new Map<number, Notice>();
  private buttons = new Map<string, HTMLButtonElement>();
  private panels = new Map<string, HTMLElement>();
  /** per cell: the id to ask for older threads from (null: none older), once a page came */
  private threadsBefore = new Map<string, number | null>();
  private noticesBefore: number | null = null;
  /** comments being edited here: id -> the text the form starts with */
  private editing = new Map<number, string>();

  constructor(private nb: NotebookView) {
    this.bellList = h("div", { class: "notice-list", role: "dialog", "aria-label": "comment notices", hidden: true });
    this.bell = h("button", { type: "button", class: "tb notice-btn", title: "Mentions and replies to your comments", "aria-haspopup": "dialog", "aria-expanded": "false", onclick: () => this.toggleNotices() }, icon("bell"));
    this.bellList.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Escape") {
        this.toggleNotices(false);
        this.bell.focus();
      }
    });
  }

  get me(): string {
    return this.nb.cfg.user.name;
  }

  // -- the margin ---------------------------------------------------------------------------

  /** Give a cell its margin button (called when the cell view is made). */
  attach(cell: CellView, side: HTMLElement): void {
    const btn = h("button", { type: "button", class: "comment-btn", "aria-expanded": String(this.panels.has(cell.id)), onclick: () => this.toggle(cell.id) });
    btn.addEventListener("keydown", (e) => e.stopPropagation()); // not the notebook's command keys
    this.buttons.set(cell.id, btn);
    side.appendChild(btn);
    this.renderButton(cell.id);
  }

  /** A far cell let go of its contents (CellView.setShell): its button goes with them. */
  detachButton(cellId: string): void {
    this.buttons.delete(cellId);
  }

  detach(cellId: string): void {
    this.detachButton(cellId);
    this.panels.get(cellId)?.remove();
    this.panels.delete(cellId);
  }

  private readable(cellId: string): boolean {
    return canRead(this.nb.conn.caps.cells[cellId] ?? "---");
  }

  private renderButton(cellId: string): void {
    const btn = this.buttons.get(cellId);
    if (!btn) return;
    const c = this.counts.get(cellId);
    btn.hidden = !this.readable(cellId);
    // drawn again only if what it says changed (every button is asked after each summary)
    const says = c ? `${c.open}/${c.unread}/${c.threads}` : "";
    if (btn.dataset.says === says) return;
    btn.dataset.says = says;
    clear(btn);
    btn.append(icon("comment"), c && c.open ? ` ${c.open}` : "");
    if (c && c.unread) btn.append(h("span", { class: "comment-unread", "data-unread": String(c.unread) }, String(c.unread)));
    btn.dataset.threads = String(c?.threads ?? 0);
    btn.dataset.unread = String(c?.unread ?? 0);
    btn.title = c ? `${c.open} open thread(s), ${c.unread} unread comment(s): show the comments on this cell` : "Comment on this cell";
    btn.setAttribute("aria-label", btn.title);
  }

  private renderAllButtons(): void {
    for (const id of this.buttons.keys()) this.renderButton(id);
  }

  // -- the connection -------------------------------------------------------------------------

  onWelcome(): void {
    void this.refresh();
  }

  /** Rights changed: forget what may not be read any more, then ask again. */
  onCaps(): void {
    for (const [id, t] of this.threads) {
      if (!t.cell_deleted && !this.readable(t.cell_id)) this.threads.delete(id);
    }
    for (const [id, c] of this.comments) if (!this.readable(c.cell_id)) this.comments.delete(id);
    for (const [cellId, panel] of this.panels) {
      if (!this.readable(cellId)) {
        panel.remove();
        this.panels.delete(cellId);
        this.buttons.get(cellId)?.setAttribute("aria-expanded", "false");
      }
    }
    void this.refresh();
  }

  private async refresh(): Promise<void> {
    if (!canRead(this.nb.conn.caps.notebook)) return;
    try {
      const ack = await this.nb.conn.command("comment_summary", {});
      this.counts = new Map(Object.entries((ack.cells as Record<string, Counts>) ?? {}));
      const notices = await this.nb.conn.command("comment_notices", {});
      this.notices = new Map(((notices.notices as Notice[]) ?? []).map((n) => [n.id, n]));
      this.noticesBefore = (notices.next_before as number | null) ?? null;
    } catch {
      return;
    }
    this.renderAllButtons();
    this.renderBell();
    // what was fetched for highlights is asked again; open panels load again
    const fetched = [...this.threadsBefore.keys()];
    this.threadsBefore.clear();
    for (const cellId of this.panels.keys()) void this.load(cellId);
    for (const cellId of fetched) if (!this.panels.has(cellId)) void this.ensureThreads(cellId);
  }

  private async olderNotices(): Promise<void> {
    if (this.noticesBefore === null) return;
    try {
      const ack = await this.nb.conn.command("comment_notices", { before: this.noticesBefore });
      for (const n of (ack.notices as Notice[]) ?? []) this.notices.set(n.id, n);
      this.noticesBefore = (ack.next_before as number | null) ?? null;
    } catch {
      return;
    }
    this.renderNotices();
    this.bellList.querySelector<HTMLElement>("button.notice:last-of-type, ul li:last-child button")?.focus();
  }

  onMessage(m: Json): boolean {
    switch (m.type) {
      case "comment_thread": {
        const t = m.thread as Thread;
        const old = this.threads.get(t.id);
        this.threads.set(t.id, { ...old, ...t, comments: old?.comments ?? [] });
        if (!old) this.bump(t.cell_id, { threads: 1, open: t.resolved ? 0 : 1 });
        else if (old.resolved !== t.resolved) this.bump(t.cell_id, { open: t.resolved ? -1 : 1 });
        if (t.cell_deleted) this.counts.delete(t.cell_id);
        this.renderPanel(t.cell_id);
        this.nb.cells.get(t.cell_id)?.refreshCommentRanges();
        return true;
      }
      case "comment": {
        const c = m.comment as Comment;
        const isNew = !this.comments.has(c.id);
        this.comments.set(c.id, c);
        if (isNew && c.author !== this.me && !c.deleted && !this.panelOpen(c.cell_id)) this.bump(c.cell_id, { unread: 1 });
        if (isNew && this.panelOpen(c.cell_id)) void this.markRead(c.cell_id);
        this.renderPanel(c.cell_id);
        return true;
      }
      case "comment_notice": {
        const n = m.notice as Notice;
        this.notices.set(n.id, n);
        this.renderBell();
        toast(n.kind === "mention" ? `${n.author} mentioned you in a comment` : `${n.author} replied to your comment`);
        return true;
      }
      case "comment_seen": {
        const cellId = String(m.cell_id);
        const c = this.counts.get(cellId);
        if (c) c.unread = 0;
        for (const n of this.notices.values()) if (n.cell_id === cellId && n.comment_id <= Number(m.seen_upto)) n.unread = false;
        this.renderButton(cellId);
        this.renderBell();
        return true;
      }
      default:
        return false;
    }
  }

  private bump(cellId: string, delta: Partial<Counts>): void {
    const c = this.counts.get(cellId) ?? { threads: 0, open: 0, unread: 0 };
    c.threads += delta.threads ?? 0;
    c.open = Math.max(0, c.open + (delta.open ?? 0));
    c.unread += delta.unread ?? 0;
    this.counts.set(cellId, c);
    this.renderButton(cellId);
  }

  // -- the panel of a cell --------------------------------------------------------------------

  /** The cells whose comments are open (a windowed notebook keeps them in the page). */
  openIds(): Iterable<string> {
    return this.panels.keys();
  }

  /** The open comments of a cell, in the page after it (a windowed notebook keeps them there). */
  panelOf(cellId: string): HTMLElement | undefined {
    return this.panels.get(cellId);
  }

  private panelOpen(cellId: string): boolean {
    return this.panels.has(cellId);
  }

  /** Open or close a cell's comments (the margin button; `open(cellId)` from a notice). */
  toggle(cellId: string, show?: boolean): void {
    const open = this.panels.has(cellId);
    if (show === undefined ? open : !show) {
      this.panels.get(cellId)?.remove();
      this.panels.delete(cellId);
      this.buttons.get(cellId)?.setAttribute("aria-expanded", "false");
      this.buttons.get(cellId)?.focus();
      return;
    }
    if (open) return;
    const cell = this.nb.cells.get(cellId);
    if (!cell) return;
    const panel = h("section", { class: "comment-panel", "aria-label": "comments on this cell", "data-cell-id": cellId });
    panel.addEventListener("keydown", (e) => {
      e.stopPropagation(); // typing here is not the notebook's command keys
      if (e.key === "Escape") this.toggle(cellId, false);
    });
    this.panels.set(cellId, panel);
    cell.el.after(panel);
    this.buttons.get(cellId)?.setAttribute("aria-expanded", "true");
    this.renderPanel(cellId);
    void this.load(cellId).then(() => panel.querySelector<HTMLTextAreaElement>("textarea.comment-new")?.focus());
  }

  private async load(cellId: string): Promise<void> {
    if (!(await this.fetch(cellId, null))) return;
    this.renderPanel(cellId);
    await this.markRead(cellId);
  }

  /** A page of the cell's threads (the newest, or those before `before`); false if it failed. */
  private async fetch(cellId: string, before: number | null): Promise<boolean> {
    let ack: Json;
    try {
      ack = await this.nb.conn.command("comment_list", { cell_id: cellId, ...(before !== null ? { before } : {}) });
    } catch {
      return false;
    }
    for (const t of (ack.threads as Thread[]) ?? []) {
      this.threads.set(t.id, t);
      for (const c of t.comments ?? []) this.comments.set(c.id, c);
    }
    if (before === null || this.threadsBefore.has(cellId)) this.threadsBefore.set(cellId, (ack.next_before as number | null) ?? null);
    this.nb.cells.get(cellId)?.refreshCommentRanges();
    return true;
  }

  /** The threads of a cell that has some, for the ranges they mark in its editor (not marked read). */
  async ensureThreads(cellId: string): Promise<void> {
    if (this.threadsBefore.has(cellId) || !this.counts.get(cellId)?.threads || !this.readable(cellId)) return;
    this.threadsBefore.set(cellId, null);
    await this.fetch(cellId, null);
  }

  /** Where the open threads anchored to a range of the cell's source are now (UTF-16 offsets). */
  rangesOf(cellId: string): { from: number; to: number }[] {
    const doc = this.nb.conn.docs.get(`cell:${cellId}`);
    if (!doc) return [];
    const out: { from: number; to: number }[] = [];
    for (const t of this.threads.values()) {
      if (t.cell_id !== cellId || t.resolved || t.cell_deleted || !t.anchor) continue;
      const r = rangeOf(doc, t.anchor);
      if (r && r.from < r.to) out.push(r);
    }
    return out.sort((a, b) => a.from - b.from || a.to - b.to);
  }

  private async markRead(cellId: string): Promise<void> {
    const c = this.counts.get(cellId);
    if (!c || !c.unread) return;
    try {
      await this.nb.conn.command("comment_read", { cell_id: cellId });
    } catch {
      return;
    }
    c.unread = 0;
    this.renderButton(cellId);
  }

  private renderPanel(cellId: string): void {
    const panel = this.panels.get(cellId);
    if (!panel) return;
    const focused = document.activeElement as HTMLElement | null;
    const focusKey = focused && panel.contains(focused) ? focused.dataset.key : undefined;
    const drafts = new Map<string, string>();
    for (const ta of panel.querySelectorAll<HTMLTextAreaElement>("textarea[data-key]")) drafts.set(ta.dataset.key as string, ta.value);
    clear(panel);
    const threads = [...this.threads.values()].filter((t) => t.cell_id === cellId && !t.cell_deleted).sort((a, b) => a.id - b.id);
    panel.append(h("h3", { class: "comment-title" }, threads.length ? `Comments (${threads.length})` : "Comments"));
    const older = this.threadsBefore.get(cellId);
    if (older !== undefined && older !== null) {
      const more = h("button", { type: "button", class: "link comment-older", "data-key": `older-${cellId}` }, "older threads");
      more.addEventListener("click", () => void this.fetch(cellId, older).then(() => this.renderPanel(cellId)));
      panel.append(more);
    }
    for (const t of threads) panel.append(this.renderThread(t, drafts));
    if (canRead(this.nb.conn.caps.cells[cellId] ?? "---")) panel.append(this.newThreadForm(cellId, drafts));
    if (focusKey) panel.querySelector<HTMLElement>(`[data-key="${CSS.escape(focusKey)}"]`)?.focus();
  }

  private renderThread(t: Thread, drafts: Map<string, string>): HTMLElement {
    const comments = [...this.comments.values()].filter((c) => c.thread_id === t.id).sort((a, b) => a.id - b.id);
    const box = h("article", { class: `comment-thread${t.resolved ? " resolved" : ""}`, "data-thread-id": String(t.id) });
    if (t.anchor) {
      box.append(h("button", { type: "button", class: "link comment-quote", "data-key": `show-${t.id}`, title: "Select this text in the cell", onclick: () => this.showRange(t) }, `“${t.anchor.quote}”`));
    }
    const list = h("ol", { class: "comment-list" });
    for (const c of comments) list.append(this.renderComment(t, c, drafts));
    box.append(list);
    if (t.resolved) box.append(h("p", { class: "comment-resolved" }, `Resolved by ${t.resolved_by ?? "someone"}`));
    const tools = h("div", { class: "comment-tools" });
    const cellRwx = this.nb.conn.caps.cells[t.cell_id] ?? "---";
    const mayResolve = t.author === this.me || canWrite(cellRwx) || this.nb.conn.caps.owner || this.nb.conn.caps.admin;
    if (mayResolve) {
      tools.append(h("button", { type: "button", class: "link", "data-key": `resolve-${t.id}`, onclick: () => void this.nb.cmd("comment_resolve", { thread_id: t.id, resolved: !t.resolved }) }, t.resolved ? "Reopen" : "Resolve"));
    }
    box.append(tools);
    const reply = this.textForm(`reply-${t.id}`, "Reply… (@name mentions)", "Reply", drafts, async (text) => {
      const ack = await this.nb.cmd("comment_reply", { thread_id: t.id, text });
      this.warn(ack);
      return ack !== null;
    });
    box.append(reply);
    return box;
  }

  private renderComment(t: Thread, c: Comment, drafts: Map<string, string>): HTMLElement {
    const li = h("li", { class: `comment${c.mentioned ? " mentioned" : ""}${c.author === this.me ? " mine" : ""}`, "data-comment-id": String(c.id) });
    li.append(
      h("div", { class: "comment-meta" }, h("span", { class: "comment-author", style: `color:${userColor(c.author)}` }, c.author), " ", h("time", { title: new Date(c.created_at * 1000).toLocaleString() }, timeAgo(c.created_at)), c.edited_at ? h("span", { class: "comment-edited" }, " (edited)") : null),
    );
    const editing = this.editing.has(c.id) && !c.deleted;
    if (c.deleted) li.append(h("em", { class: "comment-deleted" }, "comment deleted"));
    else if (editing) {
      const key = `edit-${c.id}`;
      if (!drafts.has(key)) drafts.set(key, this.editing.get(c.id) ?? c.text);
      const done = (): void => {
        this.editing.delete(c.id);
        this.renderPanel(t.cell_id);
        this.panels.get(t.cell_id)?.querySelector<HTMLElement>(`[data-key="editbtn-${c.id}"]`)?.focus();
      };
      li.append(
        this.textForm(key, "Edit your comment", "Save", drafts, async (text) => {
          const ack = await this.nb.cmd("comment_edit", { comment_id: c.id, text });
          this.warn(ack);
          return ack !== null;
        }, done),
      );
    } else li.append(h("div", { class: "comment-text" }, c.text));
    if (!c.deleted && !editing) {
      const tools = h("div", { class: "comment-tools" });
      if (c.author === this.me) {
        tools.append(h("button", { type: "button", class: "link", "data-key": `editbtn-${c.id}`, onclick: () => this.startEdit(t, c) }, "Edit"));
      }
      if (c.author === this.me || this.nb.conn.caps.owner || this.nb.conn.caps.admin) {
        tools.append(h("button", { type: "button", class: "link", "data-key": `delete-${c.id}`, onclick: () => this.confirmDelete(li, c) }, "Delete"));
      }
      li.append(tools);
    }
    return li;
  }

  private startEdit(t: Thread, c: Comment): void {
    this.editing.set(c.id, c.text);
    this.renderPanel(t.cell_id);
    this.panels.get(t.cell_id)?.querySelector<HTMLTextAreaElement>(`textarea[data-key="edit-${c.id}"]`)?.focus();
  }

  /** An inline "delete?" question in place of confirm(). */
  private confirmDelete(li: HTMLElement, c: Comment): void {
    const ask = h("div", { class: "comment-confirm", role: "group", "aria-label": "delete this comment?" }, "Delete this comment? ");
    const yes = h("button", { type: "button", class: "danger", onclick: () => void this.nb.cmd("comment_delete", { comment_id: c.id }) }, "Delete");
    const no = h("button", { type: "button", onclick: () => this.renderPanel(c.cell_id) }, "Keep");
    ask.append(yes, " ", no);
    li.querySelector(".comment-tools")?.replaceWith(ask);
    no.focus();
  }

  private textForm(key: string, placeholder: string, label: string, drafts: Map<string, string>, send: (text: string) => Promise<boolean>, cancel?: () => void): HTMLElement {
    const ta = h("textarea", { class: "comment-input", rows: "2", placeholder, "aria-label": placeholder, "data-key": key });
    ta.value = drafts.get(key) ?? "";
    const form = h("form", { class: "comment-form" }, ta, h("button", { type: "submit" }, label), cancel ? h("button", { type: "button", onclick: () => cancel() }, "Cancel") : null);
    const submit = async (): Promise<void> => {
      const text = ta.value;
      if (!text.trim()) return;
      if (await send(text)) {
        ta.value = "";
        if (cancel) cancel();
      }
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void submit();
    });
    ta.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void submit();
      }
    });
    return form;
  }

  private newThreadForm(cellId: string, drafts: Map<string, string>): HTMLElement {
    const cell = this.nb.cells.get(cellId);
    const sel = cell?.view?.state.selection.main;
    const hasSel = !!sel && sel.from < sel.to && !!cell?.ytext;
    const onSel = h("input", { type: "checkbox", class: "comment-on-selection", "data-key": `onsel-${cellId}`, disabled: !hasSel, checked: hasSel });
    const quote = hasSel && cell?.ytext ? cell.ytext.toString().slice(sel.from, Math.min(sel.to, sel.from + 60)) : "";
    const form = this.textForm(`new-${cellId}`, "Comment on this cell… (@name mentions; Ctrl-Enter sends)", "Comment", drafts, async (text) => {
      const fields: Json = { cell_id: cellId, text };
      const c = this.nb.cells.get(cellId);
      if (onSel.checked && c?.ytext && c.view) {
        const r = c.view.state.selection.main;
        if (r.from < r.to) fields.anchor = anchorFor(c.ytext, r.from, r.to);
      }
      const ack = await this.nb.cmd("comment_create", fields);
      this.warn(ack);
      return ack !== null;
    });
    form.querySelector("textarea")?.classList.add("comment-new");
    const label = h("label", { class: "comment-sel-label" }, onSel, hasSel ? ` on the selected text “${quote}”` : " on the selected text (select text in the cell first)");
    form.prepend(label);
    return form;
  }

  private showRange(t: Thread): void {
    const cell = this.nb.cells.get(t.cell_id);
    const doc = this.nb.conn.docs.get(`cell:${t.cell_id}`);
    if (!cell || !doc || !t.anchor) return;
    const r = rangeOf(doc, t.anchor);
    cell.mount();
    if (!r || !cell.view) return;
    cell.view.dispatch({ selection: { anchor: r.from, head: r.to }, scrollIntoView: true });
    cell.view.focus();
  }

  private warn(ack: Json | null): void {
    for (const w of ((ack?.warnings as { message: string }[]) ?? [])) toast(w.message);
  }

  // -- notices ----------------------------------------------------------------------------

  private renderBell(): void {
    const unread = [...this.notices.values()].filter((n) => n.unread && this.readable(n.cell_id)).length;
    clear(this.bell);
    this.bell.append(icon("bell"), unread ? ` ${unread}` : "");
    this.bell.dataset.unread = String(unread);
    this.bell.setAttribute("aria-label", `${unread} unread mention(s) and replies`);
    if (!this.bellList.hidden) this.renderNotices();
  }

  private toggleNotices(show?: boolean): void {
    const open = show ?? this.bellList.hidden;
    this.bellList.hidden = !open;
    this.bell.setAttribute("aria-expanded", String(open));
    if (open) {
      this.renderNotices();
      this.bellList.querySelector<HTMLElement>("button")?.focus();
    }
  }

  private renderNotices(): void {
    clear(this.bellList);
    const visible = [...this.notices.values()].filter((n) => this.readable(n.cell_id)).sort((a, b) => b.id - a.id);
    if (!visible.length) this.bellList.append(h("p", {}, "No mentions or replies yet."));
    const list = h("ul", {});
    for (const n of visible) {
      const what = n.kind === "mention" ? "mentioned you" : "replied";
      list.append(
        h("li", { class: n.unread ? "unread" : "" }, h("button", { type: "button", class: "link notice", onclick: () => this.openNotice(n) }, `${n.author} ${what}: ${n.text.slice(0, 80)}`)),
      );
    }
    this.bellList.append(list);
    if (this.noticesBefore !== null) this.bellList.append(h("button", { type: "button", class: "link notice-older", onclick: () => void this.olderNotices() }, "older"));
  }

  private openNotice(n: Notice): void {
    this.toggleNotices(false);
    this.nb.scrollTo(n.cell_id);
    this.toggle(n.cell_id, true);
  }
}
