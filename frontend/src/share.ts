/**
 * The share dialog of a notebook or of one cell: group, mode (owner, group,
 * other × read/edit/run), sticky bit, ACL entries; shown in plain words and as
 * `rwx`, saved with `PUT …/permissions`. The new rights reach everyone live
 * (the server pushes `caps`).
 */
import type { CellView } from "./cell";
import { showModal } from "./dialog";
import { append, h, clear, toast } from "./dom";
import type { NotebookView } from "./notebook";
import { describePerms, joinMode, modeToString, parseAclEntry, rightsInWords, splitMode, type AclEntry, type ObjectKind, type PermsModel } from "./permissions";

interface Model extends PermsModel {
  default_cell_mode?: string;
}

function rwxBoxes(kind: ObjectKind, value: string, onChange: (v: string) => void, label: string): HTMLElement {
  const names = kind === "notebook" ? ["open", "change", "run"] : ["read", "edit", "run"];
  const letters = ["r", "w", "x"];
  const boxes = letters.map((l, i) => {
    const box = h("input", { type: "checkbox", "data-bit": l, "aria-label": `${label}: ${names[i]}` });
    box.checked = value[i] === l;
    return box;
  });
  for (const box of boxes) box.addEventListener("change", () => onChange(boxes.map((b, j) => (b.checked ? letters[j] : "-")).join("")));
  return h("span", { class: "rwx-boxes" }, ...boxes.map((box, i) => h("label", { class: "bit", title: `${names[i]} (${letters[i]})` }, box, ` ${names[i]}`)));
}

export class ShareDialog {
  private dlg: HTMLDialogElement;
  private model: Model | null = null;
  private kind: ObjectKind;
  private path: string;

  constructor(
    private nb: NotebookView,
    private cell: CellView | null,
  ) {
    this.kind = cell ? "cell" : "notebook";
    this.path = `api/notebooks/${nb.cfg.notebook}` + (cell ? `/cells/${cell.id}` : "") + "/permissions";
    this.dlg = h("dialog", { class: "share-dialog", "aria-labelledby": "share-dialog-title" });
  }

  async open(): Promise<void> {
    showModal(this.dlg);
    this.dlg.appendChild(h("h2", { id: "share-dialog-title" }, "Loading the permissions…"));
    try {
      this.model = await this.nb.api.request<Model>("GET", this.path);
    } catch (err) {
      clear(this.dlg);
      this.dlg.appendChild(h("h2", { id: "share-dialog-title" }, "Permissions"));
      this.dlg.appendChild(h("p", { class: "error" }, `Cannot read the permissions: ${(err as Error).message}`));
      const close = h("button", { type: "button", onclick: () => this.dlg.close() }, "Close");
      this.dlg.appendChild(close);
      close.focus();
      return;
    }
    this.render();
  }

  /** The dialog's controls, in order (to keep the focus on the same one across a redraw). */
  private controls(): HTMLElement[] {
    return [...this.dlg.querySelectorAll<HTMLElement>("input, select, button, textarea")];
  }

  private render(): void {
    const m = this.model as Model;
    const focused = this.controls().indexOf(document.activeElement as HTMLElement);
    clear(this.dlg);
    const kind = this.kind;
    const mode = splitMode(m.mode);
    const set = (patch: Partial<Model>): void => {
      Object.assign(m, patch);
      this.render();
    };
    const setMode = (patch: Partial<ReturnType<typeof splitMode>>): void => set({ mode: joinMode({ ...mode, ...patch }) });
    const idx = this.cell ? this.nb.order.indexOf(this.cell.id) + 1 : 0;
    const title = this.cell ? `Permissions of cell ${idx}` : `Share “${String(this.nb.meta.name ?? "notebook")}”`;

    const summary = h("ul", { class: "share-summary" }, ...describePerms(m, kind).map((line) => h("li", {}, line)));
    const groupInput = h("input", { type: "text", value: m.group, class: "share-group", placeholder: "no group", "aria-label": "group" });
    groupInput.addEventListener("change", () => set({ group: groupInput.value.trim() }));
    const ownerInput = h("input", { type: "text", value: m.owner, class: "share-owner", "aria-label": "owner" });
    ownerInput.addEventListener("change", () => set({ owner: ownerInput.value.trim() }));

    const row = (who: string, label: string, value: string, onChange: (v: string) => void, extra?: HTMLElement): HTMLElement =>
      h("tr", { "data-who": who }, h("th", {}, label), h("td", {}, rwxBoxes(kind, value, onChange, label)), h("td", { class: "rwx" }, value), h("td", { class: "words" }, rightsInWords(value, kind)), h("td", {}, extra ?? ""));

    const acl = m.acl.map(parseAclEntry);
    const setAcl = (entries: AclEntry[]): void => set({ acl: entries.map((e) => `${e.tag}:${e.name}:${e.perms}`) });
    const aclRows = acl.map((e, i) => {
      const name = h("input", { type: "text", value: e.name, class: "acl-name", "aria-label": `${e.tag} name`, disabled: e.tag === "mask" });
      name.addEventListener("change", () => {
        acl[i] = { ...e, name: name.value.trim() };
        setAcl(acl);
      });
      const tagLabel = e.tag === "user" ? "person" : e.tag === "group" ? "group" : "limit (mask)";
      return this.labelled(row, tagLabel, name, e, i, acl, setAcl);
    });

    const newTag = h("select", { class: "acl-new-tag", "aria-label": "new entry kind" }, h("option", { value: "user" }, "person"), h("option", { value: "group" }, "group"));
    const newName = h("input", { type: "text", class: "acl-new-name", placeholder: "user or group name", "aria-label": "new entry name" });
    const addBtn = h("button", { type: "button", class: "acl-add" }, "Add");
    addBtn.addEventListener("click", () => {
      const name = newName.value.trim();
      if (!name) return;
      acl.push({ tag: newTag.value as "user" | "group", name, perms: kind === "cell" ? "r--" : "r-x" });
      setAcl(acl);
    });

    const sticky = h("input", { type: "checkbox", class: "share-sticky", "aria-label": "sticky" });
    sticky.checked = mode.sticky;
    sticky.addEventListener("change", () => setMode({ sticky: sticky.checked }));

    let defaultRow: HTMLElement | null = null;
    if (kind === "notebook" && m.default_cell_mode) {
      const dm = splitMode(m.default_cell_mode);
      defaultRow = h(
        "div",
        { class: "share-defaults" },
        h("strong", {}, "New cells: "),
        `owner ${rightsInWords(dm.owner, "cell")}; group ${rightsInWords(dm.group, "cell")}; others ${rightsInWords(dm.other, "cell")} `,
        h("code", {}, `${m.default_cell_mode} ${modeToString(m.default_cell_mode)}`),
        " ",
        (() => {
          const inp = h("input", { type: "text", value: m.default_cell_mode, class: "share-default-mode", size: "5", "aria-label": "default cell mode (octal)" });
          inp.addEventListener("change", () => set({ default_cell_mode: inp.value.trim() }));
          return inp;
        })(),
      );
    }

    const error = h("p", { class: "error share-error", role: "alert" });
    const save = h("button", { class: "primary share-save", type: "button" }, "Save");
    save.addEventListener("click", () => void this.save(error));
    append(
      this.dlg,
      h("h2", { id: "share-dialog-title" }, title),
      summary,
      h("p", { class: "share-mode" }, "Mode ", h("code", { class: "mode-octal" }, m.mode), " ", h("code", { class: "mode-rwx" }, modeToString(m.mode))),
      h("div", { class: "share-fields" }, h("label", {}, "Owner ", ownerInput), h("label", {}, "Group ", groupInput)),
      h(
        "table",
        { class: "share-table" },
        h("tbody", {},
          row("owner", `${m.owner} (owner)`, mode.owner, (v) => setMode({ owner: v })),
          row("group", m.group ? `group ${m.group}` : "group (none)", mode.group, (v) => setMode({ group: v })),
          ...aclRows,
          row("other", "everyone else", mode.other, (v) => setMode({ other: v })),
        ),
      ),
      h("div", { class: "acl-add-row" }, "Add ", newTag, newName, addBtn),
      kind === "notebook" ? h("label", { class: "share-sticky-row" }, sticky, " Only a cell’s owner may delete or move it (sticky bit)") : null,
      defaultRow,
      error,
      h("div", { class: "dialog-buttons" }, h("button", { type: "button", onclick: () => this.dlg.close() }, "Cancel"), save),
    );
    const controls = this.controls();
    (controls[focused] ?? controls[0])?.focus();
  }

  private labelled(row: (who: string, label: string, value: string, onChange: (v: string) => void, extra?: HTMLElement) => HTMLElement, tagLabel: string, name: HTMLInputElement, e: AclEntry, i: number, acl: AclEntry[], setAcl: (a: AclEntry[]) => void): HTMLElement {
    const tr = row(
      `acl-${i}`,
      "",
      e.perms,
      (v) => {
        acl[i] = { ...e, perms: v };
        setAcl(acl);
      },
      h("button", { class: "link acl-remove", type: "button", title: "Remove this entry", onclick: () => setAcl(acl.filter((_, j) => j !== i)) }, "remove"),
    );
    const th = tr.querySelector("th") as HTMLElement;
    th.append(`${tagLabel} `, name);
    return tr;
  }

  private async save(error: HTMLElement): Promise<void> {
    const m = this.model as Model;
    const body: Record<string, unknown> = { group: m.group, mode: m.mode, acl: m.acl };
    if (this.kind === "notebook" && m.default_cell_mode) body.default_cell_mode = m.default_cell_mode;
    const original = await this.nb.api.request<Model>("GET", this.path).catch(() => null);
    if (original && original.owner !== m.owner) body.owner = m.owner;
    try {
      await this.nb.api.request("PUT", this.path, body);
      toast("Permissions saved.");
      this.dlg.close();
    } catch (err) {
      error.textContent = (err as Error).message;
    }
  }
}
