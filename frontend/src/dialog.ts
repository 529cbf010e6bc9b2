/**
 * Modal dialogs in place of `window.confirm()` and `window.prompt()`.
 *
 * {@link showModal} opens a `<dialog>` (the questions below and the share
 * dialog): the browser makes the rest of the page inert and {@link trapFocus}
 * keeps Tab inside (the kernel picker uses it too); Esc cancels; when it
 * closes it leaves the page and focus goes back to what had it before.
 * {@link confirmDialog} asks a yes/no question, {@link textDialog} asks for a
 * text; both are labelled by their title (a question also by its message).
 */
import { h } from "./dom";

let serial = 0;

const FOCUSABLE = "button, input, select, textarea, a[href], [tabindex]:not([tabindex='-1'])";

/**
 * Keep Tab inside `dlg`: from its last control to its first and back. (A modal
 * `<dialog>` makes the page inert, but Tab would still leave it for the
 * browser's own controls.)
 */
export function trapFocus(dlg: HTMLElement): void {
  dlg.addEventListener("keydown", (e) => {
    if (e.key !== "Tab") return;
    const all = [...dlg.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((el) => !(el as HTMLButtonElement).disabled && el.getClientRects().length > 0);
    const first = all[0];
    const last = all[all.length - 1];
    if (!first || !last) return;
    const active = document.activeElement;
    if (e.shiftKey && (active === first || !dlg.contains(active))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (active === last || !dlg.contains(active))) {
      e.preventDefault();
      first.focus();
    }
  });
}

/** Show `dlg` as a modal dialog; on close it is removed and focus returns to the opener. */
export function showModal(dlg: HTMLDialogElement, opener: Element | null = document.activeElement): void {
  const back = opener instanceof HTMLElement ? opener : null;
  trapFocus(dlg);
  document.body.appendChild(dlg);
  dlg.addEventListener(
    "close",
    () => {
      dlg.remove();
      if (back?.isConnected) back.focus();
    },
    { once: true },
  );
  dlg.showModal();
}

export interface ConfirmOptions {
  title: string;
  message: string;
  /** The label of the button that does it ("Delete", "Restart"). */
  confirm: string;
  cancel?: string;
  /** A destructive action: its button is red and focus starts on Cancel. */
  danger?: boolean;
}

export interface TextOptions {
  title: string;
  label: string;
  value: string;
  confirm: string;
  cancel?: string;
  maxLength?: number;
}

interface Built {
  dlg: HTMLDialogElement;
  form: HTMLFormElement;
  ok: HTMLButtonElement;
  no: HTMLButtonElement;
}

/** The frame both questions share: a title, the body, Cancel and the action button. */
function frame(kind: string, title: string, body: HTMLElement[], confirm: string, cancel: string, danger: boolean, described: HTMLElement | null): Built {
  const id = `ask-${++serial}`;
  if (described) described.id = `${id}-message`;
  const ok = h("button", { type: "submit", class: `ask-ok ${danger ? "danger" : "primary"}`, value: "ok" }, confirm);
  const no = h("button", { type: "button", class: "ask-cancel" }, cancel);
  const form = h("form", { method: "dialog" }, ...body, h("div", { class: "dialog-buttons" }, no, ok));
  const dlg = h("dialog", { class: `ask-dialog ask-${kind}`, "aria-labelledby": `${id}-title`, "aria-describedby": described ? described.id : null }, h("h2", { id: `${id}-title` }, title), form);
  no.addEventListener("click", () => dlg.close(""));
  return { dlg, form, ok, no };
}

function answer(dlg: HTMLDialogElement): Promise<string> {
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue), { once: true }));
}

/** Ask a yes/no question; true if the user chose the action (Esc and Cancel say no). */
export async function confirmDialog(opts: ConfirmOptions): Promise<boolean> {
  const danger = opts.danger ?? false;
  const msg = h("p", { class: "ask-message" }, opts.message);
  const { dlg, ok, no } = frame("confirm", opts.title, [msg], opts.confirm, opts.cancel ?? "Cancel", danger, msg);
  const done = answer(dlg);
  showModal(dlg);
  (danger ? no : ok).focus();
  return (await done) === "ok";
}

/**
 * Ask for a text, shown in a text area; the new text, or null if cancelled.
 * Enter saves, Shift-Enter starts a new line, Esc cancels.
 */
export async function textDialog(opts: TextOptions): Promise<string | null> {
  const input = h("textarea", { class: "ask-input", rows: "4", maxlength: opts.maxLength ?? null });
  input.value = opts.value;
  const label = h("label", { class: "ask-label" }, h("span", {}, opts.label), input);
  const { dlg, form, ok } = frame("text", opts.title, [label], opts.confirm, opts.cancel ?? "Cancel", false, null);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit(ok);
    }
  });
  const done = answer(dlg);
  showModal(dlg);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
  return (await done) === "ok" ? input.value : null;
}
