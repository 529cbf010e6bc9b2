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
import { renderMarkdown, renderOutput, type OutputModel } from "./render";

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

export interface Run {
  id: number;
  user: string;
  at: number;
  status: string | null;
  execution_count: number | null;
  duration: number | null;
  per_user: boolean;
  outputs: OutputModel[] | null;
  outputs_private?: boolean;
  outputs_omitted?: boolean;
}

/** What a past run says in its list: "alice · [3] · ok · 0.12 s". */
export function describeRun(r: Run): string {
  const parts = [r.user || "someone"];
  if (r.execution_count !== null && r.execution_count !== undefined) parts.push(`[${r.execution_count}]`);
  parts.push(r.status || "unfinished");
  if (typeof r.duration === "number") parts.push(`${r.duration.toFixed(2)} s`);
  if (r.per_user) parts.push("own kernel");
  return parts.join(" · ");
}

/** Outputs as the page draws a cell's (sanitized), or a note saying why there are none. */
function outputsOf(outputs: OutputModel[] | null, why: string): HTMLElement {
  if (!outputs) return h("p", { class: "hint" }, why);
  if (!outputs.length) return h("p", { class: "hint" }, "No output.");
  return h("div", { class: "cell-outputs history-outputs" }, ...outputs.map((o) => renderOutput(window, o)));
}

/** A cell's timeline: pick a version to see its diff to now; restore it. Its past runs, with their outputs. */
export class CellHistoryDialog {
  private list: HTMLElement;
  private detail: HTMLElement;
  private more: HTMLButtonElement;
  private nextBefore: number | null = null;
  private runs: HTMLElement;
  private moreRuns: HTMLButtonElement;
  private runsBefore: number | null = null;
  private dlg: HTMLDialogElement | null = null;

  constructor(
    private nb: NotebookView,
    private cell: CellView,
  ) {
    this.list = h("ol", { class: "history-versions", "aria-label": "versions, newest first" });
    this.detail = h("div", { class: "history-detail", "aria-live": "polite" });
    this.more = h("button", { type: "button", class: "link history-more", hidden: true, onclick: () => void this.load() }, "older versions");
    this.runs = h("ol", { class: "history-runs", "aria-label": "past runs, newest first" });
    this.moreRuns = h("button", { type: "button", class: "link history-more-runs", hidden: true, onclick: () => void this.loadRuns() }, "older runs");
  }

  async open(): Promise<void> {
    const { dlg, body } = dialog("cell history", "History of this cell", () => this.cell.el.focus());
    this.dlg = dlg;
    const lists = h("div", { class: "history-list" }, h("h3", {}, "Versions"), this.list, this.more);
    if (this.cell.entry.cell_type === "code") lists.append(h("h3", {}, "Runs"), this.runs, this.moreRuns);
    body.append(h("div", { class: "history-split" }, lists, this.detail));
    await Promise.all([this.load(), this.cell.entry.cell_type === "code" ? this.loadRuns() : Promise.resolve()]);
    (this.list.querySelector("button") as HTMLButtonElement | null)?.focus();
  }

  private async loadRuns(): Promise<void> {
    try {
      const ack = await this.nb.conn.command("cell_runs", { cell_id: this.cell.id, ...(this.runsBefore !== null ? { before: this.runsBefore } : {}) });
      for (const r of (ack.runs as Run[]) ?? []) {
        const btn = h(
          "button",
          { type: "button", class: "history-run", "data-run": r.id, "aria-label": `run of ${when(r.at)} by ${r.user}` },
          h("span", { class: "history-who", style: `color: ${userColor(r.user)}` }, describeRun(r)),
          h("span", { class: "history-when" }, when(r.at)),
        );
        btn.addEventListener("click", () => this.showRun(r, btn));
        this.runs.appendChild(h("li", {}, btn));
      }
      this.runsBefore = (ack.next_before as number | null) ?? null;
      this.moreRuns.hidden = this.runsBefore === null;
      if (!this.runs.children.length) this.runs.appendChild(h("li", { class: "hint" }, "Not run yet."));
    } catch (err) {
      this.runs.replaceChildren(h("li", { class: "error" }, `Could not load the runs: ${(err as Error).message}`));
    }
  }

  private showRun(r: Run, btn: HTMLElement): void {
    for (const b of this.dlg?.querySelectorAll(".history-version, .history-run") ?? []) b.removeAttribute("aria-current");
    btn.setAttribute("aria-current", "true");
    const why = r.outputs_private ? `${r.user} ran it in their own kernel: its outputs are theirs only.` : "Its outputs are too large to show here (see the notebook at that time).";
    this.detail.replaceChildren(h("p", { class: "history-meta" }, `${describeRun(r)} · ${when(r.at)}`), h("h3", {}, "Outputs then"), outputsOf(r.outputs, why));
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
    for (const b of this.dlg?.querySelectorAll(".history-version, .history-run") ?? []) b.removeAttribute("aria-current");
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
        const outputs = (c.outputs as OutputModel[] | undefined) ?? [];
        const source = String(c.source ?? "");
        const shown = c.cell_type === "markdown" ? h("div", { class: "tt-source tt-markdown markdown-body", tabindex: "0" }) : h("pre", { class: `tt-source tt-${String(c.cell_type)}`, tabindex: "0" }, source);
        // sanitized as everywhere on the page (render.ts)
        if (c.cell_type === "markdown") shown.innerHTML = renderMarkdown(window, source);
        list.appendChild(h("li", { class: "time-travel-cell", "data-cell-id": String(c.id) }, shown, outputs.length ? h("div", { class: "tt-output cell-outputs" }, ...outputs.map((o) => renderOutput(window, o))) : null));
      }
      clear(this.view);
      this.view.append(h("p", { class: "time-travel-meta" }, `${when(at)} · read-only · ${cells.length} cell${cells.length === 1 ? "" : "s"} you may read `, download), list);
    } catch (err) {
      this.view.replaceChildren(h("p", { class: "error" }, (err as Error).message));
    }
  }
}
