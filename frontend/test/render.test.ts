import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";

import { ansiToHtml, stripAnsi } from "../src/ansi";
import { tokenize } from "../src/chattext";
import { renderMarkdown, renderOutput, sanitizeHtml, sanitizeSvg } from "../src/render";
import sanitizeWidgetHtml from "../src/sanitize-html";

const win = new JSDOM("<!doctype html><body></body>").window as unknown as Window;

function dangerous(html: string): string[] {
  const d = win.document.createElement("div");
  d.innerHTML = html;
  const found: string[] = [];
  for (const el of d.querySelectorAll("*")) {
    if (["SCRIPT", "IFRAME", "FORM", "STYLE", "OBJECT", "EMBED", "BASE", "META"].includes(el.tagName.toUpperCase())) found.push(el.tagName);
    for (const a of Array.from(el.attributes)) {
      if (a.name.startsWith("on")) found.push(`${el.tagName}@${a.name}`);
      if (/^\s*javascript:/i.test(a.value)) found.push(`${el.tagName}@${a.name}=javascript`);
    }
  }
  return found;
}

test("ANSI colours become escaped spans", () => {
  const html = ansiToHtml("\x1b[31m<b>red</b>\x1b[0m plain \x1b[1;38;5;196mx\x1b[0m");
  assert.equal(html, '<span class="ansi-red-fg">&lt;b&gt;red&lt;/b&gt;</span> plain <span class="ansi-bold" style="color:rgb(255,0,0)">x</span>');
  assert.equal(stripAnsi("\x1b[0;31mErr\x1b[0m\x1b]0;title\x07"), "Err");
});

test("HTML is sanitized", () => {
  const evil = `<script>x()</script><img src=x onerror=alert(1)><a href="javascript:alert(1)">a</a><svg><script>x</script><circle onload="x()"/></svg>
    <iframe srcdoc="<script>x</script>"></iframe><form action="javascript:x"><button formaction="javascript:x">b</button></form>
    <style>body{display:none}</style><details open ontoggle=x()></details><a href="https://example.org">ok</a>`;
  const clean = sanitizeHtml(win, evil);
  assert.deepEqual(dangerous(clean), []);
  assert.match(clean, /href="https:\/\/example.org" target="_blank" rel="noopener noreferrer nofollow"/);
  assert.deepEqual(dangerous(sanitizeSvg(win, `<svg onload="x()"><script>x()</script><a href="javascript:x"><text>t</text></a><foreignObject><img src=x onerror=x()></foreignObject></svg>`)), []);
  // the HTML profile is held by its own instance: an SVG or a widget's description
  // sanitized meanwhile, each with its own profile, does not change it
  assert.equal(sanitizeHtml(win, evil), clean);
  assert.equal(sanitizeHtml(win, '<p data-x="1" style="color:red">p</p><foreignObject>f</foreignObject>'), '<p style="color:red">p</p>');
  // ... nor does it change theirs: a widget's description keeps to the tags it allows
  const g = globalThis as { window?: unknown };
  g.window = win; // (it sanitizes with the page's window)
  try {
    assert.equal(sanitizeWidgetHtml('<b>b</b><i>i</i><a href="https://example.org">a</a>', { allowedTags: ["b"] }), "<b>b</b>ia");
  } finally {
    delete g.window;
  }
});

test("markdown: math, no script, no javascript links", () => {
  const html = renderMarkdown(win, "# T\n\n$a_1 + b_2$ and `$not math$`\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n\n<script>alert(1)</script>");
  assert.deepEqual(dangerous(html), []);
  assert.match(html, /class="katex"/);
  assert.match(html, /<code>\$not math\$<\/code>/);
});

test("outputs by type", () => {
  const stream = renderOutput(win, { output_type: "stream", name: "stderr", text: "<b>x</b>" });
  assert.equal(stream.className, "output-stream output-stderr");
  assert.equal(stream.textContent, "<b>x</b>");
  assert.equal(stream.children.length, 0);
  // colours are drawn; text with a carriage return or a NUL goes through the HTML parser,
  // as all text did before
  const coloured = renderOutput(win, { output_type: "stream", name: "stdout", text: "\x1b[31m<i>red</i>\x1b[0m\n" });
  assert.equal(coloured.innerHTML, '<span class="ansi-red-fg">&lt;i&gt;red&lt;/i&gt;</span>\n');
  const cr = renderOutput(win, { output_type: "stream", name: "stdout", text: "a\r\nb\rc" });
  assert.equal(cr.textContent, "a\nb\nc");
  const nul = renderOutput(win, { output_type: "stream", name: "stdout", text: "a\0b" });
  assert.equal(nul.textContent, "ab");
  // nbformat's list of lines (an Output widget's state may hold it)
  const lines = renderOutput(win, { output_type: "stream", name: "stdout", text: ["a\n", "b\n"] as unknown as string });
  assert.equal(lines.textContent, "a\nb\n");
  const png = renderOutput(win, { output_type: "display_data", data: { "image/png": "iVBORw0KGgo=", "text/plain": "<Figure>" } });
  assert.equal(png.querySelector("img")?.getAttribute("src"), "data:image/png;base64,iVBORw0KGgo=");
  const bad = renderOutput(win, { output_type: "display_data", data: { "image/png": '"><script>' } });
  assert.match(bad.className, /output-notice/);
  const svg = renderOutput(win, { output_type: "display_data", data: { "image/svg+xml": "<svg onload='x()'><script>x()</script></svg>" } });
  const src = decodeURIComponent(svg.querySelector("img")?.getAttribute("src") ?? "");
  assert.ok(src.startsWith("data:image/svg+xml") && !/script|onload/.test(src));
  const json = renderOutput(win, { output_type: "execute_result", data: { "application/json": { a: [1] } } });
  assert.equal(json.querySelector("pre")?.textContent, '{\n  "a": [\n    1\n  ]\n}');
  const tex = renderOutput(win, { output_type: "display_data", data: { "text/latex": "$$\\frac{1}{2}$$" } });
  assert.ok(tex.querySelector(".katex-display"));
  const err = renderOutput(win, { output_type: "error", ename: "E", evalue: "v", traceback: ["\x1b[31mE\x1b[0m: <img src=x onerror=x()>"] });
  assert.equal(err.querySelector("img"), null);
});

test("chat text tokens", () => {
  const t = tokenize("hi @bob, see #c1 and #zz. mail me@x.org", ["bob"], [{ cell_id: "c1", readable: true }]);
  assert.deepEqual(t, [
    { kind: "text", text: "hi " },
    { kind: "mention", name: "bob", text: "@bob" },
    { kind: "text", text: ", see " },
    { kind: "ref", cellId: "c1", readable: true, text: "#c1" },
    { kind: "text", text: " and #zz. mail me@x.org" },
  ]);
});
