/**
 * Rendering untrusted content: cell outputs (mime bundles, streams, errors) and
 * markdown. Everything written by a collaborator is untrusted:
 *
 * - HTML (outputs, markdown) goes through DOMPurify with a strict profile: no
 *   script, no event handlers, no `javascript:` URLs, no forms, frames, `<style>`,
 *   `<base>` or `<meta>`; links open in a new tab without an opener. It is inserted
 *   into a container with CSS `contain: paint` so it cannot overlay the page.
 * - SVG is sanitized AND shown through `<img>` (an SVG image never runs script).
 * - Text, JSON and tracebacks are text (ANSI colours become escaped HTML spans).
 * The page's CSP (`script-src 'self'`) is the last line of defence.
 *
 * Functions take the `Window` to use so that tests can run them on jsdom.
 */
import createDOMPurify from "dompurify";
import type { DOMPurify } from "dompurify";
import katex from "katex";
import { Marked } from "marked";

import { ansiToHtml } from "./ansi";

export interface OutputModel {
  output_type: string;
  name?: string;
  text?: string;
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  execution_count?: number | null;
  ename?: string;
  evalue?: string;
  traceback?: string[];
  level?: string;
}

const FORBID_TAGS = ["script", "style", "iframe", "frame", "frameset", "object", "embed", "form", "input", "button", "textarea", "select", "option", "base", "link", "meta", "noscript", "template", "portal"];
const FORBID_ATTR = ["srcdoc", "formaction", "action", "ping", "background", "xlink:href"];

const purifiers = new WeakMap<object, DOMPurify>();
const htmlPurifiers = new WeakMap<object, DOMPurify>();

/** The HTML profile of markdown and HTML outputs (sanitizeHtml). */
const HTML_PROFILE = {
  FORBID_TAGS,
  FORBID_ATTR,
  ALLOW_DATA_ATTR: false,
  ALLOW_UNKNOWN_PROTOCOLS: false,
  USE_PROFILES: { html: true, svg: true, svgFilters: true, mathMl: true },
};

/**
 * The DOMPurify instance `cache` holds for a window, made the first time with the page's
 * link and image rules; with `profile`, the instance holds it (setConfig) and callers
 * pass none.
 */
function purifierOf(cache: WeakMap<object, DOMPurify>, win: Window, profile?: typeof HTML_PROFILE): DOMPurify {
  let p = cache.get(win);
  if (p) return p;
  p = createDOMPurify(win as unknown as Parameters<typeof createDOMPurify>[0]);
  p.addHook("afterSanitizeAttributes", (node) => {
    const el = node as Element;
    if (el.tagName === "A") {
      const href = el.getAttribute("href") || "";
      if (href.startsWith("#")) {
        el.removeAttribute("target");
      } else {
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer nofollow");
      }
    }
    // only same-document or data:/blob: images (CSP blocks others anyway)
    if (el.tagName === "IMG") {
      const src = el.getAttribute("src") || "";
      if (src && !/^(data:image\/(png|jpeg|gif|webp);|blob:|attachment:)/i.test(src) && /^[a-z][a-z0-9+.-]*:/i.test(src)) el.removeAttribute("src");
    }
  });
  if (profile) p.setConfig(profile);
  cache.set(win, p);
  return p;
}

/** The DOMPurify instance of a window that callers configure at each call. */
export function purifier(win: Window): DOMPurify {
  return purifierOf(purifiers, win);
}

/**
 * Sanitize untrusted HTML into a string safe for `innerHTML`. Its instance holds the
 * profile once (setConfig): read at each call, the profile took a third of the time of
 * sanitizing a short markdown cell, and its garbage.
 */
export function sanitizeHtml(win: Window, html: string): string {
  return purifierOf(htmlPurifiers, win, HTML_PROFILE).sanitize(html) as unknown as string;
}

/** Sanitize an SVG document (string) for display through `<img>`. */
export function sanitizeSvg(win: Window, svg: string): string {
  return purifier(win).sanitize(svg, {
    USE_PROFILES: { svg: true, svgFilters: true },
    FORBID_TAGS: [...FORBID_TAGS, "foreignObject", "use", "animate", "set"],
    FORBID_ATTR,
  }) as unknown as string;
}

const BASE64 = /^[A-Za-z0-9+/=\s]*$/;

// -- math -------------------------------------------------------------------------------------

export function renderLatex(tex: string, display: boolean): string {
  return katex.renderToString(tex, { displayMode: display, throwOnError: false, trust: false, strict: "ignore", output: "htmlAndMathml", maxSize: 50, maxExpand: 1000 });
}

/** A text/latex output: `$…$`, `$$…$$`, `\[…\]` or bare TeX. */
export function latexOutput(tex: string): string {
  let t = tex.trim();
  let display = true;
  const m = /^\$\$([\s\S]*)\$\$$/.exec(t) || /^\\\[([\s\S]*)\\\]$/.exec(t);
  if (m) t = m[1] as string;
  else if (/^\$[^$]([\s\S]*)\$$/.test(t)) {
    t = t.slice(1, -1);
    display = false;
  }
  return renderLatex(t, display);
}

// -- markdown ---------------------------------------------------------------------------------

const marked = new Marked({ gfm: true, breaks: false, async: false });

/**
 * Markdown → sanitized HTML. Math (`$…$`, `$$…$$`) is cut out before markdown
 * parsing (so `_` inside math survives) and rendered by KaTeX.
 */
export function renderMarkdown(win: Window, source: string): string {
  const math: string[] = [];
  const stash = (html: string): string => {
    math.push(html);
    return `@@MATH${math.length - 1}@@`;
  };
  // leave code spans and fences alone
  const parts = source.split(/(```[\s\S]*?```|`[^`\n]*`)/g);
  const prepared = parts
    .map((part, i) => {
      if (i % 2 === 1) return part;
      return part
        .replace(/\$\$([\s\S]+?)\$\$/g, (_m, tex: string) => stash(renderLatex(tex, true)))
        .replace(/(^|[^\\$])\$([^$\n]+?)\$/g, (_m, pre: string, tex: string) => pre + stash(renderLatex(tex, false)));
    })
    .join("");
  let html = marked.parse(prepared) as string;
  html = html.replace(/@@MATH(\d+)@@/g, (_m, n: string) => math[Number(n)] ?? "");
  return sanitizeHtml(win, html);
}

// -- outputs ----------------------------------------------------------------------------------

/** Mime types we render, best first. */
export const MIME_ORDER = ["text/html", "image/svg+xml", "image/png", "image/jpeg", "image/gif", "text/markdown", "text/latex", "application/json", "text/plain"];

export function pickMime(data: Record<string, unknown>): string | null {
  for (const m of MIME_ORDER) if (m in data) return m;
  const json = Object.keys(data).find((k) => k.endsWith("+json"));
  return json ?? null;
}

function textOf(v: unknown): string {
  if (Array.isArray(v)) return v.join("");
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

/** A `<pre>` of `text`, its ANSI colours drawn (most text has none: it is set as text). */
function pre(doc: Document, cls: string, text: string): HTMLElement {
  const el = doc.createElement("pre");
  el.className = cls;
  // (escapes, and what the HTML parser would rewrite: CR, NUL)
  // eslint-disable-next-line no-control-regex
  if (/[\x1b\r\0]/.test(text)) el.innerHTML = ansiToHtml(text);
  else el.textContent = text;
  return el;
}

/** One output as a DOM element (never throws: bad data becomes a notice). */
export function renderOutput(win: Window, out: OutputModel): HTMLElement {
  const doc = win.document;
  try {
    switch (out.output_type) {
      case "stream":
        return pre(doc, `output-stream output-${out.name === "stderr" ? "stderr" : "stdout"}`, textOf(out.text ?? ""));
      case "error": {
        const tb = (out.traceback && out.traceback.length ? out.traceback : [`${out.ename}: ${out.evalue}`]).join("\n");
        return pre(doc, "output-error", tb);
      }
      case "notice": {
        const el = doc.createElement("div");
        el.className = `output-notice output-notice-${out.level === "error" ? "error" : "warning"}`;
        el.textContent = out.text ?? "";
        return el;
      }
      case "display_data":
      case "execute_result":
        return renderMime(win, out.data ?? {});
      default: {
        const el = doc.createElement("div");
        el.className = "output-notice";
        el.textContent = `(an output of type ${String(out.output_type)} is not shown)`;
        return el;
      }
    }
  } catch (err) {
    const el = doc.createElement("div");
    el.className = "output-notice output-notice-error";
    el.textContent = `This output could not be shown: ${String(err)}`;
    return el;
  }
}

export function renderMime(win: Window, data: Record<string, unknown>): HTMLElement {
  const doc = win.document;
  const mime = pickMime(data);
  const box = doc.createElement("div");
  box.className = "output-mime";
  if (mime) box.dataset.mime = mime;
  if (!mime) {
    box.textContent = "(no displayable data)";
    return box;
  }
  const value = data[mime];
  if (mime === "text/html") {
    box.classList.add("output-html");
    box.innerHTML = sanitizeHtml(win, textOf(value));
  } else if (mime === "image/svg+xml") {
    const clean = sanitizeSvg(win, textOf(value));
    const img = doc.createElement("img");
    img.alt = "SVG output";
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(clean);
    box.appendChild(img);
  } else if (mime === "image/png" || mime === "image/jpeg" || mime === "image/gif") {
    const b64 = textOf(value);
    if (!BASE64.test(b64)) throw new Error("image data is not base64");
    const img = doc.createElement("img");
    img.alt = "image output";
    img.src = `data:${mime};base64,${b64.replace(/\s/g, "")}`;
    box.appendChild(img);
  } else if (mime === "text/markdown") {
    box.classList.add("output-markdown", "markdown-body");
    box.innerHTML = renderMarkdown(win, textOf(value));
  } else if (mime === "text/latex") {
    box.classList.add("output-latex");
    box.innerHTML = sanitizeHtml(win, latexOutput(textOf(value)));
  } else if (mime === "text/plain") {
    box.appendChild(pre(doc, "output-text", textOf(value)));
  } else {
    const p = doc.createElement("pre");
    p.className = "output-json";
    p.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    box.appendChild(p);
  }
  return box;
}
