/**
 * ANSI escape sequences (SGR colours as in IPython tracebacks) → escaped HTML.
 * Every character of the input is HTML-escaped; the only markup produced is
 * `<span class="…" style="color:rgb(…)">` built from numbers. Other escape
 * sequences (cursor movement, OSC titles) are dropped.
 */

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

interface Style {
  fg: string | null; // class name or rgb()
  bg: string | null;
  bold: boolean;
  italic: boolean;
  underline: boolean;
}

const plain = (): Style => ({ fg: null, bg: null, bold: false, italic: false, underline: false });

function color256(n: number): string {
  if (n < 16) return NAMES[n % 8] + (n >= 8 ? "-bright" : "");
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const lv = (k: number): number => (k === 0 ? 0 : 55 + k * 40);
  return `rgb(${lv(Math.floor(i / 36))},${lv(Math.floor(i / 6) % 6)},${lv(i % 6)})`;
}

function applySgr(style: Style, codes: number[]): Style {
  const s = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] as number;
    if (c === 0) Object.assign(s, plain());
    else if (c === 1) s.bold = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 22) s.bold = false;
    else if (c === 23) s.italic = false;
    else if (c === 24) s.underline = false;
    else if (c >= 30 && c <= 37) s.fg = NAMES[c - 30] as string;
    else if (c >= 90 && c <= 97) s.fg = NAMES[c - 90] + "-bright";
    else if (c === 39) s.fg = null;
    else if (c >= 40 && c <= 47) s.bg = NAMES[c - 40] as string;
    else if (c >= 100 && c <= 107) s.bg = NAMES[c - 100] + "-bright";
    else if (c === 49) s.bg = null;
    else if (c === 38 || c === 48) {
      let value: string | null = null;
      if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
        value = color256(Math.min(255, codes[i + 2] as number));
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
        const [r, g, b] = [codes[i + 2], codes[i + 3], codes[i + 4]].map((v) => Math.min(255, v as number));
        value = `rgb(${r},${g},${b})`;
        i += 4;
      }
      if (c === 38) s.fg = value;
      else s.bg = value;
    }
  }
  return s;
}

function open(s: Style): string {
  const cls: string[] = [];
  const css: string[] = [];
  if (s.fg) {
    if (s.fg.startsWith("rgb")) css.push(`color:${s.fg}`);
    else cls.push(`ansi-${s.fg}-fg`);
  }
  if (s.bg) {
    if (s.bg.startsWith("rgb")) css.push(`background-color:${s.bg}`);
    else cls.push(`ansi-${s.bg}-bg`);
  }
  if (s.bold) cls.push("ansi-bold");
  if (s.italic) cls.push("ansi-italic");
  if (s.underline) cls.push("ansi-underline");
  if (!cls.length && !css.length) return "";
  return `<span${cls.length ? ` class="${cls.join(" ")}"` : ""}${css.length ? ` style="${css.join(";")}"` : ""}>`;
}

// CSI ... final byte, OSC ... BEL/ST, and lone ESC + one char
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]?/g;

export function ansiToHtml(text: string): string {
  let out = "";
  let style = plain();
  let last = 0;
  let openTag = "";
  const emit = (chunk: string): void => {
    if (!chunk) return;
    out += openTag ? `${openTag}${escapeHtml(chunk)}</span>` : escapeHtml(chunk);
  };
  for (const m of text.matchAll(ESCAPES)) {
    emit(text.slice(last, m.index));
    last = (m.index as number) + m[0].length;
    if (m[2] === "m") {
      const codes = (m[1] || "0").split(";").map((x) => (x === "" ? 0 : parseInt(x, 10) || 0));
      style = applySgr(style, codes);
      openTag = open(style);
    }
  }
  emit(text.slice(last));
  return out;
}

/** The text without any escape sequence (for copying, searching, tests). */
export function stripAnsi(text: string): string {
  return text.replace(ESCAPES, "");
}
