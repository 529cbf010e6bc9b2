/**
 * The kernel picker: a dialog, opened from the kernel status in the toolbar, that
 * shows where the notebook's kernel runs and lets the user choose another place
 * (`kernel_resources`, `select_kernel`), start one of their servers
 * (`start_server`, with `server_progress`), switch back to or shut down a kernel
 * they keep, and, for the notebook's owner or an admin, change the kernel mode
 * (`kernel_settings`). It follows `kernel`, `server_progress` and `caps` messages
 * while open. Every failure is shown in the dialog. Words: kernelwords.ts.
 */
import type { Json } from "./connection";
import { trapFocus } from "./dialog";
import { append, clear, h } from "./dom";
import {
  type KernelStatus,
  type Listing,
  type ResourceEntry,
  type ServerProgress,
  consentWords,
  failureText,
  groupResources,
  initialSpec,
  kernelStatusFrom,
  keptText,
  listingFrom,
  modeWords,
  needsConsent,
  placeChosen,
  progressText,
  resourceStateWords,
  serverProgressFrom,
  specLabel,
  statusText,
} from "./kernelwords";

/** What the picker needs from the page (the notebook view gives it its connection). */
export interface PickerHost {
  /** Send a command; resolves with its ack, rejects with an error carrying `code` and `message`. */
  command(type: string, fields: Json, timeoutMs?: number): Promise<Json>;
  /** Listen to every JSON message from the server; returns the function that stops it. */
  listen(fn: (m: Json) => void): () => void;
  /** The last `kernel` status the page got, if any. */
  status(): KernelStatus | null;
  /** True if the user may change the notebook's settings (its owner, or an admin). */
  mayChangeMode(): boolean;
}

/** A server start can take minutes (the service gives up after 300 s). */
const START_TIMEOUT_MS = 330_000;

interface Start {
  progress: ServerProgress | null;
  error: string | null;
  running: boolean;
}

export class KernelPicker {
  readonly el: HTMLDialogElement;
  private listing: Listing | null = null;
  private loadError: string | null = null;
  private error: string | null = null;
  private notice: string | null = null;
  private status: KernelStatus | null;
  private acting = false;
  private generation = 0;
  private starts = new Map<string, Start>();
  private specs = new Map<string, string>();
  private consented = new Set<string>();
  private stopListening: (() => void) | null = null;

  constructor(
    private host: PickerHost,
    private opener: HTMLElement | null = null,
  ) {
    this.status = host.status();
    this.el = h("dialog", { class: "kernel-dialog", "aria-labelledby": "kernel-dialog-title", "aria-describedby": "kernel-dialog-now" });
    this.el.addEventListener("close", () => this.closed());
    trapFocus(this.el);
  }

  /** Show the dialog (modal: focus moves into it, Esc closes it) and load the listing. */
  async open(): Promise<void> {
    const loaded = this.mount();
    this.el.showModal();
    this.focusFirst();
    await loaded;
  }

  /** Put the dialog in the page, follow the server and load, without showing it (tests). */
  async mount(): Promise<void> {
    document.body.appendChild(this.el);
    this.stopListening = this.host.listen((m) => this.onMessage(m));
    this.render();
    await this.load();
  }

  close(): void {
    if (this.el.open) this.el.close();
    else this.closed();
  }

  private closed(): void {
    this.stopListening?.();
    this.stopListening = null;
    this.el.remove();
    this.opener?.focus();
  }

  /** Ask for the listing again; only the newest answer is shown. */
  async load(): Promise<void> {
    const mine = ++this.generation;
    try {
      const ack = await this.host.command("kernel_resources", {});
      if (mine !== this.generation) return;
      this.listing = listingFrom(ack.resources);
      this.loadError = null;
    } catch (err) {
      if (mine !== this.generation) return;
      this.listing = null;
      this.loadError = failureText("You cannot choose where this notebook's kernel runs", err as Error & { code?: string });
    }
    this.render();
  }

  // -- messages from the server ----------------------------------------------------------------

  private onMessage(m: Json): void {
    if (m.type === "kernel") {
      this.status = kernelStatusFrom(m);
      const modeChanged = this.listing !== null && this.listing.kernel_mode !== this.status.kernel_mode;
      this.render();
      if (modeChanged) void this.load();
    } else if (m.type === "server_progress") {
      this.onProgress(serverProgressFrom(m));
    } else if (m.type === "caps" || m.type === "welcome") {
      void this.load();
    }
  }

  private onProgress(p: ServerProgress): void {
    const start = this.starts.get(p.resource) ?? { progress: null, error: null, running: true };
    start.progress = p;
    if (p.failed) {
      start.error = p.message || "the server failed to start";
      start.running = false;
    }
    this.starts.set(p.resource, start);
    this.render();
    if (p.ready) void this.load();
  }

  // -- actions ---------------------------------------------------------------------------------

  /** Run one action at a time; its failure goes to the dialog's error line. */
  private async act(what: string, fn: () => Promise<void>): Promise<void> {
    if (this.acting) return;
    this.acting = true;
    this.error = null;
    this.notice = `${what}…`;
    this.render();
    try {
      await fn();
    } catch (err) {
      this.notice = null;
      this.error = failureText(`Could not ${what.toLowerCase()}`, err as Error & { code?: string });
    } finally {
      this.acting = false;
      this.render();
    }
  }

  private select(resource: string, kernelName: string, consent: boolean): Promise<void> {
    return this.act("Switch the kernel", async () => {
      const fields: Json = { resource, kernel_name: kernelName };
      if (consent) fields.consent = true;
      const ack = await this.host.command("select_kernel", fields);
      if (ack.status && typeof ack.status === "object") this.status = kernelStatusFrom(ack.status as Json);
      this.notice = this.status ? `Using ${this.status.kernel_name} ${this.status.where}.` : "Switched.";
      await this.load();
    });
  }

  private shutdownKept(resource: string, kernelName: string): Promise<void> {
    return this.act("Shut the kernel down", async () => {
      await this.host.command("shutdown_kernel", { resource, kernel_name: kernelName });
      this.notice = `The ${kernelName} kernel was shut down.`;
    });
  }

  private setMode(mode: string): Promise<void> {
    return this.act("Change the kernel mode", async () => {
      await this.host.command("kernel_settings", { settings: { kernel_mode: mode } });
      this.notice = `The kernel mode is now ${mode}.`;
      await this.load();
    });
  }

  /** Start a server; its progress comes as `server_progress` messages meanwhile. */
  private async startServer(entry: ResourceEntry): Promise<void> {
    const start: Start = { progress: null, error: null, running: true };
    this.starts.set(entry.resource, start);
    this.render();
    try {
      await this.host.command("start_server", { server: entry.server ?? "" }, START_TIMEOUT_MS);
      this.starts.delete(entry.resource);
      this.notice = `${entry.label} is running.`;
      await this.load();
    } catch (err) {
      start.running = false;
      start.error = failureText(`${entry.label} did not start`, err as Error & { code?: string });
      this.render();
    }
  }

  // -- drawing ---------------------------------------------------------------------------------

  /** Draw the dialog again from its state, keeping the focused control focused. */
  render(): void {
    const focused = this.el.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.key : undefined;
    const scroll = this.el.scrollTop;
    clear(this.el);
    append(
      this.el,
      h(
        "div",
        { class: "kp-head" },
        h("h2", { id: "kernel-dialog-title" }, "Where the kernel runs"),
        h("button", { type: "button", class: "kp-x", "aria-label": "Close", title: "Close (Esc)", "data-key": "x", onclick: () => this.close() }, "×"),
      ),
      this.nowSection(),
      this.listing ? this.modeSection(this.listing) : null,
      this.listing ? this.resourcesSection(this.listing) : this.loadError ? null : h("p", { class: "kp-loading" }, "Loading where kernels may run…"),
      this.keptSection(),
      h("p", { class: "error kp-error", role: "alert" }, this.loadError ?? "", this.loadError && this.error ? " " : "", this.error ?? ""),
      h("p", { class: "kp-notice", role: "status" }, this.notice ?? ""),
      h("div", { class: "dialog-buttons" }, h("button", { type: "button", class: "kp-close", "data-key": "close", onclick: () => this.close() }, "Close")),
    );
    this.el.scrollTop = scroll;
    if (focused) this.refocus(focused);
  }

  private refocus(key: string): void {
    const all = [...this.el.querySelectorAll<HTMLElement>("[data-key]")];
    const row = key.split("|")[0];
    const target = all.find((el) => el.dataset.key === key) ?? all.find((el) => el.dataset.key?.split("|")[0] === row) ?? all.find((el) => el.dataset.key === "close");
    target?.focus();
  }

  private focusFirst(): void {
    if (!this.el.contains(document.activeElement)) this.el.querySelector<HTMLElement>("[data-key]")?.focus();
  }

  private nowSection(): HTMLElement {
    const s = this.status;
    return h(
      "div",
      { class: "kp-now", id: "kernel-dialog-now" },
      h("p", {}, "Now: ", h("strong", { class: "kp-now-text" }, s ? statusText(s) : "no kernel status yet")),
      s?.message ? h("p", { class: "kp-now-message" }, s.message) : null,
    );
  }

  private modeSection(listing: Listing): HTMLElement {
    const other = listing.kernel_mode === "shared" ? "per-user" : "shared";
    const section = h("section", { class: "kp-mode", "aria-label": "kernel mode" }, h("p", {}, "Mode: ", h("strong", { class: "kp-mode-text", "data-mode": listing.kernel_mode }, modeWords(listing.kernel_mode)), "."));
    if (this.host.mayChangeMode()) {
      append(
        section,
        h(
          "p",
          { class: "kp-mode-change" },
          h("button", { type: "button", class: "kp-mode-button", "data-key": "mode", onclick: () => void this.setMode(other) }, `Switch to ${other} mode`),
          " Every kernel of this notebook is shut down: everyone's variables are lost.",
        ),
      );
    } else if (listing.kernel_mode === "shared" && !listing.may_choose) {
      append(section, h("p", { class: "kp-readonly" }, `The owner, ${listing.owner}, picks where the shared kernel runs.`));
    }
    return section;
  }

  private resourcesSection(listing: Listing): HTMLElement {
    const section = h("section", { class: "kp-resources", "aria-label": "where kernels may run" });
    for (const group of groupResources(listing.resources)) {
      append(section, h("h3", {}, group.title), h("ul", { class: "kp-list" }, ...group.entries.map((e) => this.resourceRow(listing, e))));
    }
    if (!listing.resources.length) append(section, h("p", {}, "This service offers no place to run kernels."));
    return section;
  }

  private current(listing: Listing): { resource: string; kernel_name: string } {
    return this.status ?? listing;
  }

  /** "in use" on the current resource; "not chosen yet" while the owner has not agreed to it. */
  private badge(listing: Listing, e: ResourceEntry): HTMLElement | null {
    if (this.current(listing).resource !== e.resource) return null;
    return this.status && !placeChosen(this.status) ? h("span", { class: "badge kp-badge kp-badge-waiting" }, "not chosen yet") : h("span", { class: "badge kp-badge" }, "in use");
  }

  private resourceRow(listing: Listing, e: ResourceEntry): HTMLElement {
    const inUse = this.current(listing).resource === e.resource;
    const start = this.starts.get(e.resource);
    const starting = e.pending === "spawn" || (start?.running ?? false);
    return h(
      "li",
      { class: `kp-resource${inUse ? " kp-in-use" : ""}`, "data-resource": e.resource, "data-state": e.state },
      h("div", { class: "kp-resource-head" }, h("strong", { class: "kp-label" }, e.label), " ", h("span", { class: "kp-state" }, resourceStateWords(e)), this.badge(listing, e)),
      e.error ? h("p", { class: "error kp-resource-error" }, e.error) : null,
      listing.may_choose && e.state === "ready" && e.kernelspecs ? this.chooser(listing, e) : null,
      !listing.may_choose && e.kernelspecs?.length ? h("p", { class: "kp-specs" }, "Kernels: ", e.kernelspecs.map(specLabel).join(", ")) : null,
      listing.may_choose && e.kind === "server" && e.state === "stopped" && !starting ? this.startButton(e) : null,
      starting ? this.progress(start?.progress ?? null, e.resource) : null,
      start?.error ? h("p", { class: "error kp-start-error", role: "alert" }, start.error) : null,
    );
  }

  private chooser(listing: Listing, e: ResourceEntry): HTMLElement {
    const specs = e.kernelspecs ?? [];
    if (!specs.length) return h("p", { class: "kp-specs" }, "No kernels are installed here.");
    const chosen = this.specs.get(e.resource) ?? initialSpec(e, this.current(listing));
    const select = h("select", { class: "kp-spec", "aria-label": `Kernel on ${e.label}`, "data-key": `${e.resource}|spec` }, ...specs.map((s) => h("option", { value: s.name, selected: s.name === chosen }, specLabel(s))));
    select.value = chosen;
    select.addEventListener("change", () => this.specs.set(e.resource, select.value));
    const consent = needsConsent(listing, e) ? this.consentBox(listing, e) : null;
    const use = h("button", { type: "button", class: "primary kp-use", "data-key": `${e.resource}|use` }, "Use this kernel");
    use.addEventListener("click", () => void this.select(e.resource, select.value, this.consented.has(e.resource)));
    return h("div", { class: "kp-choose" }, h("label", {}, "Kernel ", select), consent, use);
  }

  private consentBox(listing: Listing, e: ResourceEntry): HTMLElement {
    const box = h("input", { type: "checkbox", class: "kp-consent", "data-key": `${e.resource}|consent` });
    box.checked = this.consented.has(e.resource);
    box.addEventListener("change", () => {
      if (box.checked) this.consented.add(e.resource);
      else this.consented.delete(e.resource);
    });
    return h("label", { class: "kp-consent-row" }, box, " ", consentWords(listing.owner, e));
  }

  private startButton(e: ResourceEntry): HTMLElement {
    return h("button", { type: "button", class: "kp-start", "data-key": `${e.resource}|start`, "aria-label": `Start ${e.label}`, onclick: () => void this.startServer(e) }, "Start");
  }

  private progress(p: ServerProgress | null, resource: string): HTMLElement {
    const bar = h("progress", { class: "kp-progress", max: 100, "aria-label": "server start", "data-key": `${resource}|progress`, tabindex: -1 });
    if (p?.progress !== null && p?.progress !== undefined) bar.value = p.progress;
    return h("div", { class: "kp-starting" }, bar, " ", h("span", { class: "kp-progress-text" }, progressText(p)));
  }

  private keptSection(): HTMLElement | null {
    const kept = this.status?.kept ?? [];
    if (!kept.length) return null;
    const resources = this.listing?.resources ?? [];
    const may = this.listing?.may_choose ?? false;
    const rows = kept.map((k) => {
      const key = `kept:${k.resource}:${k.kernel_name}`;
      return h(
        "li",
        { class: "kp-kept-item", "data-resource": k.resource, "data-kernel": k.kernel_name },
        h("span", {}, keptText(k, resources)),
        may ? h("button", { type: "button", class: "kp-switch-back", "data-key": `${key}|back`, onclick: () => void this.select(k.resource, k.kernel_name, this.consented.has(k.resource)) }, "Switch back") : null,
        may ? h("button", { type: "button", class: "kp-shutdown danger", "data-key": `${key}|shutdown`, onclick: () => void this.shutdownKept(k.resource, k.kernel_name) }, "Shut down") : null,
      );
    });
    return h("section", { class: "kp-kept", "aria-label": "kernels you keep" }, h("h3", {}, "Kernels you keep"), h("p", { class: "kp-hint" }, "Switching back finds their variables as you left them."), h("ul", { class: "kp-list" }, ...rows));
  }
}
