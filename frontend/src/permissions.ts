/**
 * Permission wording: POSIX modes and ACL entries as `rwx` and in plain words
 * ("students can read and run, not edit"). Pure functions (see docs/permissions.md).
 */

export type ObjectKind = "notebook" | "cell";

export interface PermsModel {
  owner: string;
  group: string;
  mode: string; // octal, e.g. "1775" or "0640"
  acl: string[]; // "user:bob:rw-", "group:ta:rwx", "mask::rwx"
}

export interface AclEntry {
  tag: "user" | "group" | "mask" | "other";
  name: string;
  perms: string; // "rw-"
}

/** Octal mode → its numeric value (throws on bad input). */
export function parseOctal(mode: string): number {
  if (!/^[0-7]{1,4}$/.test(mode)) throw new Error(`not an octal mode: ${JSON.stringify(mode)}`);
  return parseInt(mode, 8);
}

/** 3 bits → "r-x". */
export function bitsToRwx(bits: number): string {
  return (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") + (bits & 1 ? "x" : "-");
}

/** "r-x" → 5. */
export function rwxToBits(rwx: string): number {
  if (!/^[r-][w-][x-]$/.test(rwx)) throw new Error(`not an rwx triple: ${JSON.stringify(rwx)}`);
  return (rwx[0] === "r" ? 4 : 0) | (rwx[1] === "w" ? 2 : 0) | (rwx[2] === "x" ? 1 : 0);
}

/** "1775" → "rwxrwxr-t" (ls -l style, the sticky bit shown in the last place). */
export function modeToString(mode: string): string {
  const m = parseOctal(mode);
  const s = bitsToRwx((m >> 6) & 7) + bitsToRwx((m >> 3) & 7) + bitsToRwx(m & 7);
  if (m & 0o1000) return s.slice(0, 8) + (m & 1 ? "t" : "T");
  return s;
}

/** The owner, group, other triples and the sticky bit of a mode. */
export function splitMode(mode: string): { owner: string; group: string; other: string; sticky: boolean } {
  const m = parseOctal(mode);
  return {
    owner: bitsToRwx((m >> 6) & 7),
    group: bitsToRwx((m >> 3) & 7),
    other: bitsToRwx(m & 7),
    sticky: (m & 0o1000) !== 0,
  };
}

/** Inverse of {@link splitMode}: always four octal digits ("0640", "1775"). */
export function joinMode(p: { owner: string; group: string; other: string; sticky: boolean }): string {
  const m = (p.sticky ? 0o1000 : 0) | (rwxToBits(p.owner) << 6) | (rwxToBits(p.group) << 3) | rwxToBits(p.other);
  return m.toString(8).padStart(4, "0");
}

export function parseAclEntry(entry: string): AclEntry {
  const parts = entry.split(":");
  if (parts.length !== 3) throw new Error(`not an ACL entry: ${JSON.stringify(entry)}`);
  const [tag, name, perms] = parts as [string, string, string];
  if (tag !== "user" && tag !== "group" && tag !== "mask" && tag !== "other") throw new Error(`unknown ACL tag ${JSON.stringify(tag)}`);
  rwxToBits(perms);
  return { tag, name, perms };
}

export function formatAclEntry(e: AclEntry): string {
  return `${e.tag}:${e.name}:${e.perms}`;
}

const VERBS: Record<ObjectKind, [string, string, string]> = {
  // r, w, x
  notebook: ["open", "change cells", "run"],
  cell: ["read", "edit", "run"],
};

function joinWords(words: string[]): string {
  if (words.length <= 1) return words.join("");
  return words.slice(0, -1).join(", ") + " and " + words[words.length - 1];
}

/**
 * What a set of bits allows, in words: "can read and run, not edit".
 * Without `r` a cell is hidden, whatever the other bits say.
 */
export function rightsInWords(rwx: string, kind: ObjectKind): string {
  const bits = rwxToBits(rwx);
  const [r, w, x] = VERBS[kind];
  if (!(bits & 4)) return kind === "cell" ? "cannot see it" : "cannot open it";
  const yes: string[] = [r];
  const no: string[] = [];
  (bits & 2 ? yes : no).push(w);
  (bits & 1 ? yes : no).push(x);
  if (kind === "cell" && !(bits & 2) && !(bits & 1)) return "can only read it";
  return `can ${joinWords(yes)}${no.length ? ", not " + joinWords(no).replace(" and ", " or ") : ""}`;
}

/** The effective bits of a masked entry. */
export function masked(rwx: string, mask: string | null): string {
  if (mask === null) return rwx;
  return bitsToRwx(rwxToBits(rwx) & rwxToBits(mask));
}

/** One sentence per class of users, in evaluation order, e.g. for the share dialog. */
export function describePerms(p: PermsModel, kind: ObjectKind): string[] {
  const mode = splitMode(p.mode);
  const entries = p.acl.map(parseAclEntry);
  const maskEntry = entries.find((e) => e.tag === "mask");
  const mask = maskEntry ? maskEntry.perms : null;
  const lines: string[] = [];
  lines.push(`${p.owner || "the owner"} (owner) ${rightsInWords(mode.owner, kind)}`);
  for (const e of entries) {
    if (e.tag === "user") lines.push(`${e.name} ${rightsInWords(masked(e.perms, mask), kind)}`);
  }
  if (p.group) lines.push(`members of ${p.group} ${rightsInWords(masked(mode.group, mask), kind)}`);
  for (const e of entries) {
    if (e.tag === "group") lines.push(`members of ${e.name} ${rightsInWords(masked(e.perms, mask), kind)}`);
  }
  lines.push(`everyone else ${rightsInWords(mode.other, kind)}`);
  if (kind === "notebook" && mode.sticky) lines.push("only a cell's owner (or the notebook's owner) may delete or move it (sticky)");
  return lines;
}

/** Short badge text for a cell of the current user's caps ("rw-"). */
export function capsBadge(rwx: string | undefined): { label: string; title: string } | null {
  if (!rwx || rwx[0] !== "r") return { label: "hidden", title: "You may not see this cell" };
  if (rwx[1] !== "w") return { label: "locked", title: `Read-only for you: you ${rightsInWords(rwx, "cell")} (${rwx})` };
  return null;
}
