/**
 * The history (docs/history.md): a cell's timeline with a diff to now and restore, the
 * notebook's activity feed, and the notebook as it was at a chosen time (read-only,
 * downloadable as .ipynb). Everything goes through the WebSocket's history commands;
 * the server leaves out whatever the user may not read now. Text is always text.
 */
import type { CellView } from "./cell";
import type { Json } from "./connection";
import { showModal } from "./dialog";
import { append, h, clear, toast, userColor } from "./dom";
import type { NotebookView } from "./notebook";
import { canWrite } from "./protocol";

export interface Version {
  id: number;
  start: number;
  end: number;
  author: string;
  authors: string[];
  updates: number;
  compacted: boolean;
}

/** "12 Mar, 14:03:10": a time of the history (seconds since 1970). */
export function when(seconds: number): string {
  if (!seconds) return "before history was kept";
  return new Date(seconds * 1000).toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Who made a version, in words. */
export function whoMade(v: Version): string {
  if (v.id === 0) return "the notebook as it was";
  const names = v.authors.filter((a) => a);
  if (!names.length) return "the server";
  return names.join(", ");
}

/** A unified diff as lines, each with its kind (added, removed, hunk, context). */
export function diffLines(diff: string): { kind: "add" | "del" | "hunk" | "ctx" | "file"; text: string }[] {
  return diff
    .split("\n")
    .filter((line, i, all) => line !== "" || i < all.length - 1)
    .map((text) => ({
      kind: text.startsWith("+++") || text.startsWith("---") ? "file" : text.startsWith("@@") ? "hunk" : text.startsWith("+") ? "add" : text.startsWith("-") ? "del" : "ctx",
      text,
    }));
}

function dialog(label: string, title: string, onClose: () => void): { dlg: HTMLDialogElement; body: HTMLElement } {
  const body = h("div", { class: "history-body" });
  const dlg = h("dialog", { class: "history-dialog", "aria-label": label }, h("div", { class: "history-head" }, h("h2", {}, title), h("button", { type: "button", class: "link history-close", "aria-label": "close", onclick: () => dlg.close() }, "×")), body);
  dlg.addEventListener("close", () => onClose());
  showModal(dlg);
  return { dlg, body };
}

/** A cell's timeline: pick a version to see its diff to now; restore it. */
export class CellHistoryDialog {
  private list: HTMLElement;
  private detail: HTMLElement;
  private more: HTMLButtonElement;
  private nextBefore: number | null = null;
  private dlg: HTMLDialogElement | null = null;

  constructor(
    private nb: NotebookView,
    private cell: CellView,
  ) {
    this.list = h("ol", { class: "history-versions", "aria-label": "versions, newest first" });
    this.detail = h("div", { class: "history-detail", "aria-live": "polite" });
    this.more = h("button", { type: "button", class: "link history-more", hidden: true, onclick: () => void this.load() }, "older versions");
  }

  async open(): Promise<void> {
    const { dlg, body } = dialog("cell history", "History of this cell", () => this.cell.el.focus());
    this.dlg = dlg;
    body.append(h("div", { class: "history-split" }, h("div", { class: "history-list" }, this.list, this.more), this.detail));
    await this.load();
    (this.list.querySelector("button") as HTMLButtonElement | null)?.focus();
  }

  private async load(): Promise<void> {
    try {
      const ack = await this.nb.conn.command("cell_history", { cell_id: this.cell.id, ...(this.nextBefore !== null ? { before: this.nextBefore } : {}) });
      for (const v of (ack.versions as Version[]) ?? []) this.list.appendChild(this.item(v));
      this.nextBefore = (ack.next_before as number | null) ?? null;
      this.more.hidden = this.nextBefore === null;
      if (!this.list.children.length) this.detail.replaceChildren(h("p", {}, "No history yet."));
    } catch (err) {
      this.detail.replaceChildren(h("p", { class: "error" }, `Could not load the history: ${(err as Error).message}`));
    }
  }

  private item(v: Version): HTMLElement {
    const who = whoMade(v);
    const btn = h(
      "button",
      { type: "button", class: "history-version", "data-version": v.id, "aria-label": `version of ${when(v.end)} by ${who}` },
      h("span", { class: "history-who", style: `color: ${userColor(v.author)}` }, who),
      h("span", { class: "history-when" }, when(v.end)),
      h("span", { class: "history-size" }, v.compacted ? (v.id === 0 ? "baseline" : "a day") : `${v.updates} edit${v.updates === 1 ? "" : "s"}`),
    );
    btn.addEventListener("click", () => void this.show(v, btn));
    btn.addEventListener("keydown", (e: KeyboardEvent) => {
      const items = [...this.list.querySelectorAll<HTMLButtonElement>("button.history-version")];
      const i = items.indexOf(btn);
      if (e.key === "ArrowDown" && items[i + 1]) items[i + 1]!.focus();
      else if (e.key === "ArrowUp" && items[i - 1]) items[i - 1]!.focus();
      else return;
      e.preventDefault();
    });
    return h("li", {}, btn);
  }

  private async show(v: Version, btn: HTMLElement): Promise<void> {
    for (const b of this.list.querySelectorAll(".history-version")) b.removeAttribute("aria-current");
    btn.setAttribute("aria-current", "true");
    this.detail.replaceChildren(h("p", {}, "Loading…"));
    try {
      const ack = await this.nb.conn.command("cell_version", { cell_id: this.cell.id, version: v.id });
      const pre = h("pre", { class: "history-diff", tabindex: "0", "aria-label": "changes from this version to now" });
      if (ack.too_large) pre.appendChild(h("span", { class: "ctx" }, "(too large to compare)"));
      else if (!ack.diff) pre.appendChild(h("span", { class: "ctx" }, "(the same as now)"));
      else for (const line of diffLines(String(ack.diff))) pre.appendChild(h("span", { class: `diff-${line.kind}` }, line.text + "\n"));
      const restore = h("button", { type: "button", class: "history-restore", disabled: !canWrite(this.cell.rwx) || !ack.diff, onclick: () => void this.restore(v) }, "Restore this version");
      clear(this.detail);
      append(
        this.detail,
        h("p", { class: "history-meta" }, `${whoMade(v)} · ${when(v.end)}`),
        h("h3", {}, "Then"),
        h("pre", { class: "history-source", tabindex: "0", "aria-label": "the source of this version" }, String(ack.source ?? "")),
        h("h3", {}, "Changes since"),
        pre,
        restore,
        canWrite(this.cell.rwx) ? null : h("p", { class: "hint" }, "You may read this cell but not change it."),
      );
    } catch (err) {
      this.detail.replaceChildren(h("p", { class: "error" }, (err as Error).message));
    }
  }

  private async restore(v: Version): Promise<void> {
    try {
      const ack = await this.nb.conn.command("restore_version", { cell_id: this.cell.id, version: v.id });
      toast(ack.changed ? `Restored the version of ${when(v.end)}` : "The cell already holds this version");
      this.dlg?.close();
    } catch (err) {
      toast(`Could not restore: ${(err as Error).message}`, "error");
    }
  }
}

interface Item extends Json {
  kind: string;
  user: string;
  at: number;
}

const STRUCTURE: Record<string, string> = { insert_cell: "inserted", delete_cell: "deleted", move_cell: "moved", set_cell_type: "changed the type of" };

/** What an activity item says. */
export function describe(item: Item): string {
  const cell = item.cell_id ? ` cell ${String(item.cell_id)}` : "";
  switch (item.kind) {
    case "edit":
      return `edited${cell} (${String(item.updates)} edit${item.updates === 1 ? "" : "s"})`;
    case "run":
      return `ran${cell}: ${String(item.status ?? "")}`;
    case "structure":
      return `${STRUCTURE[String(item.action)] ?? String(item.action)}${cell}`;
    case "permissions":
      return `changed the permissions of ${item.target === "notebook" ? "the notebook" : String(item.target).replace("cell:", "cell ")}`;
    case "created":
      return "created the notebook";
    case "kernel":
      return `kernel: ${String(item.action)}`;
    case "chat": {
      const msg = item.message as Json;
      return `said: ${msg.deleted ? "(deleted)" : String(msg.text ?? "")}`;
    }
    default:
      return item.kind;
  }
}

/** The notebook's activity feed and the notebook at a chosen time. */
export class NotebookHistoryDialog {
  private feed: HTMLElement;
  private more: HTMLButtonElement;
  private view: HTMLElement;
  private nextBefore: number | null = null;

  constructor(private nb: NotebookView) {
    this.feed = h("ol", { class: "activity-list", "aria-label": "activity, newest first" });
    this.more = h("button", { type: "button", class: "link activity-more", hidden: true, onclick: () => void this.load() }, "older activity");
    this.view = h("div", { class: "time-travel-view", "aria-live": "polite" });
  }

  async open(): Promise<void> {
    const { body } = dialog("notebook history", "History of this notebook", () => undefined);
    const input = h("input", { type: "datetime-local", class: "time-travel-at", step: "1", "aria-label": "the moment to see" });
    const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
    input.value = now.toISOString().slice(0, 19);
    const form = h("form", { class: "time-travel-form" }, h("label", {}, "See the notebook as it was at ", input), h("button", { type: "submit", class: "time-travel-show" }, "Show"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const at = new Date(input.value).getTime() / 1000;
      if (Number.isFinite(at)) void this.travel(at);
    });
    body.append(h("section", { class: "activity", "aria-label": "activity" }, h("h3", {}, "Activity"), this.feed, this.more), h("section", { class: "time-travel", "aria-label": "time travel" }, h("h3", {}, "The notebook at a time"), form, this.view));
    await this.load();
    input.focus();
  }

  private async load(): Promise<void> {
    try {
      const ack = await this.nb.conn.command("activity", this.nextBefore !== null ? { before: this.nextBefore } : {});
      for (const item of (ack.items as Item[]) ?? []) {
        const li = h("li", { class: `activity-item activity-${item.kind}` }, h("span", { class: "activity-who", style: `color: ${userColor(item.user)}` }, item.user || "the server"), " ", describe(item), " ", h("time", { class: "activity-when" }, when(item.at)));
        if (item.kind === "edit" || item.kind === "run") {
          const at = item.at;
          li.appendChild(h("button", { type: "button", class: "link activity-travel", "aria-label": `see the notebook at ${when(at)}`, onclick: () => void this.travel(at) }, "see then"));
        }
        this.feed.appendChild(li);
      }
      this.nextBefore = (ack.next_before as number | null) ?? null;
      this.more.hidden = this.nextBefore === null;
    } catch (err) {
      toast(`Could not load the activity: ${(err as Error).message}`, "error");
    }
  }

  private async travel(at: number): Promise<void> {
    this.view.replaceChildren(h("p", {}, "Loading…"));
    try {
      const ack = await this.nb.conn.command("notebook_at", { at });
      const nb = ack.notebook as Json;
      const cells = (nb.cells as Json[]) ?? [];
      const download = h("a", { class: "time-travel-download", href: `${this.nb.cfg.base_url}api/notebooks/${this.nb.cfg.notebook}/history?at=${at}&download=1`, download: "" }, "⤓ .ipynb of this moment");
      const list = h("ol", { class: "time-travel-cells", "aria-label": `the notebook at ${when(at)}, read-only` });
      for (const c of cells) {
        const outputs = ((c.outputs as Json[]) ?? []).map((o) => String(o.text ?? (o.data as Json | undefined)?.["text/plain"] ?? o.evalue ?? "")).filter(Boolean);
        list.appendChild(
          h(
            "li",
            { class: "time-travel-cell", "data-cell-id": String(c.id) },
            h("pre", { class: `tt-source tt-${String(c.cell_type)}`, tabindex: "0" }, String(c.source ?? "")),
            outputs.length ? h("pre", { class: "tt-output" }, outputs.join("")) : null,
          ),
        );
      }
      clear(this.view);
      this.view.append(h("p", { class: "time-travel-meta" }, `${when(at)} · read-only · ${cells.length} cell${cells.length === 1 ? "" : "s"} you may read `, download), list);
    } catch (err) {
      this.view.replaceChildren(h("p", { class: "error" }, (err as Error).message));
    }
  }
}
