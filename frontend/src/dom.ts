/** Tiny DOM helpers: build elements without innerHTML (text is always text). */

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = String(v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** A stable colour for a user name. */
export function userColor(name: string): string {
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (hash * 31 + name.charCodeAt(i)) | 0;
  const hue = Math.abs(hash) % 360;
  // dark enough for white initials and for text on white (4.5:1): yellow to cyan look lighter
  const light = hue >= 40 && hue < 200 ? 26 : 34;
  return `hsl(${hue}, 70%, ${light}%)`;
}

export function initials(name: string): string {
  const parts = name.split(/[._@\s-]+/).filter(Boolean);
  const s = parts.length > 1 ? (parts[0] as string)[0]! + (parts[1] as string)[0]! : name.slice(0, 2);
  return s.toUpperCase();
}

export function timeAgo(seconds: number | null | undefined, now = Date.now() / 1000): string {
  if (!seconds) return "";
  const d = Math.max(0, now - seconds);
  if (d < 10) return "just now";
  if (d < 60) return `${Math.floor(d)} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleString();
}

let toastBox: HTMLElement | null = null;

/** A short notice at the bottom of the page. */
export function toast(text: string, kind: "info" | "error" = "info", ms = 4000): void {
  if (!toastBox) {
    toastBox = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(toastBox);
  }
  const t = h("div", { class: `toast toast-${kind}` }, text);
  toastBox.appendChild(t);
  setTimeout(() => t.remove(), ms);
}
