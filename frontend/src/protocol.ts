/**
 * Wire protocol v1 codec (docs/protocol.md): binary frames of one or more entries
 * `varString(docName) ‖ y-protocols message`. Pure functions, no DOM, no socket.
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";

export const MSG_SYNC = 0;
export const MSG_AWARENESS = 1;
export const SYNC_STEP1 = 0;
export const SYNC_STEP2 = 1;
export const SYNC_UPDATE = 2;

export const INDEX_DOC = "index";
export const CELL_PREFIX = "cell:";
export const OUT_PREFIX = "out:";

export interface SyncEntry {
  doc: string;
  kind: typeof MSG_SYNC;
  step: number;
  payload: Uint8Array;
}

export interface AwarenessEntry {
  doc: string;
  kind: typeof MSG_AWARENESS;
  payload: Uint8Array;
}

export type Entry = SyncEntry | AwarenessEntry;

/** Append one sync entry (step 1, step 2 or update) to an encoder. */
export function writeSync(enc: encoding.Encoder, doc: string, step: number, payload: Uint8Array): void {
  encoding.writeVarString(enc, doc);
  encoding.writeVarUint(enc, MSG_SYNC);
  encoding.writeVarUint(enc, step);
  encoding.writeVarUint8Array(enc, payload);
}

export function writeAwareness(enc: encoding.Encoder, doc: string, payload: Uint8Array): void {
  encoding.writeVarString(enc, doc);
  encoding.writeVarUint(enc, MSG_AWARENESS);
  encoding.writeVarUint8Array(enc, payload);
}

/** One frame holding a single sync entry. */
export function syncFrame(doc: string, step: number, payload: Uint8Array): Uint8Array {
  const enc = encoding.createEncoder();
  writeSync(enc, doc, step, payload);
  return encoding.toUint8Array(enc);
}

/** One frame holding sync step 1 for each of `docs` (the batching extension). */
export function batchStep1(docs: Iterable<[string, Uint8Array]>): Uint8Array {
  const enc = encoding.createEncoder();
  for (const [name, sv] of docs) writeSync(enc, name, SYNC_STEP1, sv);
  return encoding.toUint8Array(enc);
}

export function awarenessFrame(payload: Uint8Array): Uint8Array {
  const enc = encoding.createEncoder();
  writeAwareness(enc, INDEX_DOC, payload);
  return encoding.toUint8Array(enc);
}

/** Decode every entry of a binary frame; throws on a malformed frame. */
export function decodeFrame(data: Uint8Array): Entry[] {
  const dec = decoding.createDecoder(data);
  const out: Entry[] = [];
  while (decoding.hasContent(dec)) {
    const doc = decoding.readVarString(dec);
    const kind = decoding.readVarUint(dec);
    if (kind === MSG_SYNC) {
      const step = decoding.readVarUint(dec);
      if (step > SYNC_UPDATE) throw new Error(`unknown sync step ${step}`);
      out.push({ doc, kind: MSG_SYNC, step, payload: decoding.readVarUint8Array(dec) });
    } else if (kind === MSG_AWARENESS) {
      out.push({ doc, kind: MSG_AWARENESS, payload: decoding.readVarUint8Array(dec) });
    } else {
      throw new Error(`unknown message kind ${kind}`);
    }
  }
  return out;
}

export type DocKind = "index" | "cell" | "out";

/** `"cell:abc"` → `["cell", "abc"]`; `"index"` → `["index", null]`; null if unknown. */
export function splitDocName(name: string): [DocKind, string | null] | null {
  if (name === INDEX_DOC) return ["index", null];
  const valid = (id: string): boolean => /^[A-Za-z0-9_-]{1,64}$/.test(id);
  if (name.startsWith(CELL_PREFIX) && valid(name.slice(CELL_PREFIX.length))) return ["cell", name.slice(CELL_PREFIX.length)];
  if (name.startsWith(OUT_PREFIX) && valid(name.slice(OUT_PREFIX.length))) return ["out", name.slice(OUT_PREFIX.length)];
  return null;
}

export const cellDoc = (id: string): string => CELL_PREFIX + id;
export const outDoc = (id: string): string => OUT_PREFIX + id;

/** WebSocket URL of a notebook, from the page's base URL (a path) and location. */
export function wsUrl(loc: { protocol: string; host: string }, baseUrl: string, nb: string, epoch?: string | null): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  const base = baseUrl.endsWith("/") ? baseUrl : baseUrl + "/";
  const q = epoch ? `?epoch=${encodeURIComponent(epoch)}` : "";
  return `${scheme}//${loc.host}${base}api/notebooks/${encodeURIComponent(nb)}/ws${q}`;
}

/** Caps as the server sends them in `welcome` and `caps`. */
export interface Caps {
  notebook: string;
  cells: Record<string, string>;
  owner?: boolean;
  admin?: boolean;
}

export const canRead = (rwx: string | undefined): boolean => !!rwx && rwx[0] === "r";
export const canWrite = (rwx: string | undefined): boolean => !!rwx && rwx[1] === "w";
export const canExec = (rwx: string | undefined): boolean => !!rwx && rwx[2] === "x";
