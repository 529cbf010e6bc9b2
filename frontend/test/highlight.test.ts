import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";

import { highlightPython } from "../src/highlight";

test("a code preview keeps the text exactly and colours it as the editor would", () => {
  const doc = new JSDOM("<!doctype html><body></body>").window.document;
  const pre = doc.createElement("pre");
  const code = "def f(x):\n    return 'a' + str(x)  # note\n\n<b>not html</b>";
  highlightPython(pre, code);
  assert.equal(pre.textContent, code);
  assert.equal(pre.querySelector("b"), null, "text, never markup");
  const classes = new Set([...pre.querySelectorAll("span")].map((s) => s.className));
  assert.ok(classes.size >= 3, [...classes].join(" ")); // keyword, string, comment at least
  const keyword = [...pre.querySelectorAll("span")].find((s) => s.textContent === "def");
  assert.ok(keyword?.className, "the keyword has the highlight style's class");
  // the highlight style's rules are in the document once
  highlightPython(pre, "x = 1");
  assert.equal(pre.textContent, "x = 1");
});
