import assert from "node:assert/strict";
import { test } from "node:test";
import * as Y from "yjs";

import { SYNC_STEP1, SYNC_UPDATE, batchStep1, decodeFrame, splitDocName, syncFrame, wsUrl } from "../src/protocol";

test("a batch of step 1 messages decodes entry by entry", () => {
  const a = new Y.Doc();
  a.getText("source").insert(0, "hi");
  const frame = batchStep1([
    ["index", Y.encodeStateVector(new Y.Doc())],
    ["cell:c1", Y.encodeStateVector(a)],
  ]);
  const entries = decodeFrame(frame);
  assert.deepEqual(entries.map((e) => e.doc), ["index", "cell:c1"]);
  assert.equal(entries[1]!.kind, 0);
  assert.equal((entries[1] as { step: number }).step, SYNC_STEP1);
  assert.deepEqual(entries[1]!.payload, Y.encodeStateVector(a));
});

test("an update frame round-trips and applies", () => {
  const a = new Y.Doc();
  a.getText("source").insert(0, "hello");
  const e = decodeFrame(syncFrame("cell:x", SYNC_UPDATE, Y.encodeStateAsUpdate(a)))[0]!;
  const b = new Y.Doc();
  Y.applyUpdate(b, e.payload);
  assert.equal(b.getText("source").toString(), "hello");
});

test("malformed frames throw", () => {
  assert.throws(() => decodeFrame(new Uint8Array([5, 1, 2])));
  assert.throws(() => decodeFrame(new Uint8Array([1, 0x61, 7])));
});

test("doc names and URLs", () => {
  assert.deepEqual(splitDocName("cell:ab_1"), ["cell", "ab_1"]);
  assert.deepEqual(splitDocName("index"), ["index", null]);
  assert.equal(splitDocName("cell:../x"), null);
  assert.equal(wsUrl({ protocol: "https:", host: "h" }, "/services/collab/", "n1", "e 1"), "wss://h/services/collab/api/notebooks/n1/ws?epoch=e%201");
});
