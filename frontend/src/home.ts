/** The home page: notebooks you own and ones shared with you; create, import, delete. */
import { Api } from "./api";
import type { PageConfig } from "./config";
import { confirmDialog } from "./dialog";
import { h, clear, timeAgo, toast } from "./dom";
import { modeToString, rightsInWords } from "./permissions";

interface NotebookSummary {
  id: string;
  name: string;
  owner: string;
  group: string;
  mode: string;
  caps: string;
  updated_at?: number;
  created_at?: number;
}

export class HomeView {
  private api: Api;
  private mine: HTMLElement;
  private shared: HTMLElement;
  private status: HTMLElement;

  constructor(
    private cfg: PageConfig,
    root: HTMLElement,
  ) {
    this.api = new Api(cfg);
    this.mine = h("ul", { class: "nb-list nb-mine" });
    this.shared = h("ul", { class: "nb-list nb-shared" });
    this.status = h("p", { class: "home-status", role: "status" });
    const name = h("input", { type: "text", name: "name", placeholder: "New notebook name", required: true, maxlength: "255", class: "new-name", "aria-label": "new notebook name" });
    const create = h("form", { class: "create-form" }, name, h("button", { type: "submit", class: "primary" }, "Create"));
    create.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.create(name.value.trim());
    });
    const file = h("input", { type: "file", accept: ".ipynb,application/x-ipynb+json,application/json", class: "import-file", "aria-label": "import .ipynb" });
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      if (f) void this.importFile(f);
      file.value = "";
    });
    root.append(
      h(
        "div",
        { class: "home" },
        h("header", { class: "home-header" }, h("h1", {}, "hub-collab"), h("span", { class: "me" }, `Signed in as ${cfg.user.name}`)),
        h("section", { class: "home-actions" }, create, h("label", { class: "import-label button" }, "Import .ipynb… ", file)),
        this.status,
        h("section", {}, h("h2", {}, "Your notebooks"), this.mine),
        h("section", {}, h("h2", {}, "Shared with you"), this.shared),
      ),
    );
    void this.load();
  }

  private notebookUrl(id: string): string {
    const base = this.cfg.base_url.endsWith("/") ? this.cfg.base_url : this.cfg.base_url + "/";
    return `${base}notebooks/${encodeURIComponent(id)}`;
  }

  async load(): Promise<void> {
    try {
      const { notebooks } = await this.api.request<{ notebooks: NotebookSummary[] }>("GET", "api/notebooks");
      clear(this.mine);
      clear(this.shared);
      notebooks.sort((a, b) => (b.updated_at ?? 0) - (a.updated_at ?? 0));
      for (const nb of notebooks) (nb.owner === this.cfg.user.name ? this.mine : this.shared).appendChild(this.item(nb));
      if (!this.mine.hasChildNodes()) this.mine.appendChild(h("li", { class: "empty" }, "None yet: create one above or import an .ipynb file."));
      if (!this.shared.hasChildNodes()) this.shared.appendChild(h("li", { class: "empty" }, "Nothing is shared with you yet."));
    } catch (err) {
      this.status.textContent = `Could not list notebooks: ${(err as Error).message}`;
    }
  }

  private item(nb: NotebookSummary): HTMLElement {
    const canDelete = nb.owner === this.cfg.user.name || this.cfg.user.admin;
    let rwx = nb.mode;
    try {
      rwx = modeToString(nb.mode);
    } catch {
      /* shown as is */
    }
    return h(
      "li",
      { class: "nb-item", "data-id": nb.id },
      h("a", { href: this.notebookUrl(nb.id), class: "nb-link" }, nb.name),
      h("span", { class: "nb-owner" }, nb.owner === this.cfg.user.name ? "you" : nb.owner),
      h("span", { class: "nb-perms", title: `mode ${nb.mode}${nb.group ? `, group ${nb.group}` : ""}` }, h("code", {}, rwx), nb.group ? ` ${nb.group}` : ""),
      h("span", { class: "nb-caps", title: `you ${rightsInWords(nb.caps, "notebook")}` }, `you: ${nb.caps}`),
      h("span", { class: "nb-updated" }, timeAgo(nb.updated_at)),
      canDelete ? h("button", { type: "button", class: "link danger nb-delete", "aria-label": `delete ${nb.name}`, onclick: () => void this.remove(nb) }, "delete") : null,
    );
  }

  private async create(name: string, content?: unknown): Promise<void> {
    if (!name) return;
    const verb = content === undefined ? "create" : "import";
    try {
      const nb = await this.api.request<NotebookSummary>("POST", "api/notebooks", content === undefined ? { name } : { name, content });
      window.location.href = this.notebookUrl(nb.id);
    } catch (err) {
      // the server's message says which limit or which part of the notebook (docs/rest.md)
      this.status.textContent = `Could not ${verb} “${name}”: ${(err as Error).message}`;
    }
  }

  private async importFile(f: File): Promise<void> {
    let content: unknown;
    try {
      content = JSON.parse(await f.text());
    } catch {
      this.status.textContent = `${f.name} is not a notebook (not JSON).`;
      return;
    }
    const name = f.name.replace(/\.ipynb$/i, "");
    this.status.textContent = `Importing “${name}”…`;
    await this.create(name, content);
  }

  private async remove(nb: NotebookSummary): Promise<void> {
    const sure = await confirmDialog({ title: `Delete “${nb.name}”?`, message: "It is deleted for everyone: its cells, outputs, chat and comments.", confirm: "Delete", danger: true });
    if (!sure) return;
    try {
      await this.api.request("DELETE", `api/notebooks/${encodeURIComponent(nb.id)}`);
      toast(`Deleted “${nb.name}”.`);
      await this.load();
    } catch (err) {
      this.status.textContent = `Could not delete: ${(err as Error).message}`;
    }
  }
}
