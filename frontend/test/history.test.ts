import assert from "node:assert/strict";
import { test } from "node:test";

import { describe, describeRun, diffLines, whoMade, type Run, type Version } from "../src/history";

const version = (over: Partial<Version>): Version => ({ id: 5, start: 1, end: 2, author: "bob", authors: ["bob"], updates: 3, compacted: false, ...over });

test("who made a version", () => {
  assert.equal(whoMade(version({})), "bob");
  assert.equal(whoMade(version({ authors: ["bob", "carol"], compacted: true })), "bob, carol");
  assert.equal(whoMade(version({ authors: [""] })), "the server");
  assert.equal(whoMade(version({ id: 0, authors: [], compacted: true })), "the notebook as it was");
});

test("a unified diff as kinds of lines", () => {
  const lines = diffLines("--- version\n+++ current\n@@ -1 +1,2 @@\n-x = 1\n+x = 2\n y\n");
  assert.deepEqual(
    lines.map((l) => l.kind),
    ["file", "file", "hunk", "del", "add", "ctx"],
  );
  assert.equal(lines[4]?.text, "+x = 2");
});

test("activity items in words, text kept as text", () => {
  assert.equal(describe({ kind: "edit", user: "bob", at: 1, cell_id: "c1", updates: 1 }), "edited cell c1 (1 edit)");
  assert.equal(describe({ kind: "structure", user: "bob", at: 1, cell_id: "c1", action: "set_cell_type" }), "changed the type of cell c1");
  assert.equal(describe({ kind: "permissions", user: "t", at: 1, target: "cell:c2" }), "changed the permissions of cell c2");
  assert.equal(describe({ kind: "chat", user: "b", at: 1, message: { text: "<img src=x onerror=alert(1)>", deleted: false } }), "said: <img src=x onerror=alert(1)>");
});

test("a past run in words", () => {
  const run: Run = { id: 3, user: "alice", at: 1, status: "ok", execution_count: 4, duration: 0.125, per_user: false, outputs: [] };
  assert.equal(describeRun(run), "alice · [4] · ok · 0.13 s");
  assert.equal(describeRun({ ...run, status: null, execution_count: null, duration: null, per_user: true }), "alice · unfinished · own kernel");
});
