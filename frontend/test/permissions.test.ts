import assert from "node:assert/strict";
import { test } from "node:test";

import { capsBadge, describePerms, joinMode, modeToString, rightsInWords, splitMode } from "../src/permissions";

test("rwx strings", () => {
  assert.equal(modeToString("0640"), "rw-r-----");
  assert.equal(modeToString("1775"), "rwxrwxr-t");
  assert.equal(modeToString("1770"), "rwxrwx--T");
  assert.equal(joinMode(splitMode("1775")), "1775");
  assert.equal(joinMode({ owner: "rw-", group: "r--", other: "---", sticky: false }), "0640");
});

test("plain words", () => {
  assert.equal(rightsInWords("r-x", "cell"), "can read and run, not edit");
  assert.equal(rightsInWords("rwx", "cell"), "can read, edit and run");
  assert.equal(rightsInWords("r--", "cell"), "can only read it");
  assert.equal(rightsInWords("-wx", "cell"), "cannot see it");
  assert.equal(rightsInWords("rw-", "cell"), "can read and edit, not run");
  assert.equal(rightsInWords("r-x", "notebook"), "can open and run, not change cells");
});

test("describing a notebook with an ACL and a mask", () => {
  const lines = describePerms({ owner: "inst", group: "students", mode: "1750", acl: ["user:bob:rwx", "group:ta:rwx", "mask::r-x"] }, "notebook");
  assert.deepEqual(lines, [
    "inst (owner) can open, change cells and run",
    "bob can open and run, not change cells",
    "members of students can open and run, not change cells",
    "members of ta can open and run, not change cells",
    "everyone else cannot open it",
    "only a cell's owner (or the notebook's owner) may delete or move it (sticky)",
  ]);
});

test("badges", () => {
  assert.equal(capsBadge("---")?.label, "hidden");
  assert.equal(capsBadge("r-x")?.label, "locked");
  assert.equal(capsBadge("rw-"), null);
});
