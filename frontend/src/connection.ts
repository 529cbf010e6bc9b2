/**
 * One live connection to one notebook (wire protocol v1, docs/protocol.md).
 *
 * Keeps a Y.Doc per subscribed document across reconnects: on reconnect every
 * held doc is re-subscribed with sync step 1 (its state vector), and the
 * server's own step 1 for writable cells pulls back edits typed while offline.
 * Follows `caps` (subscribes newly readable docs, drops revoked ones), drops and
 * re-subscribes a doc on `resync`, and batches the initial subscriptions of a
 * notebook into one frame. Listeners get plain callbacks (no framework).
 */
import * as awarenessProtocol from "y-protocols/awareness";
import * as encoding from "lib0/encoding";
import * as Y from "yjs";

import {
  INDEX_DOC,
  MSG_AWARENESS,
  SYNC_STEP1,
  SYNC_STEP2,
  SYNC_UPDATE,
  type Caps,
  awarenessFrame,
  canRead,
  cellDoc,
  decodeFrame,
  outDoc,
  splitDocName,
  syncFrame,
  writeSync,
  wsUrl,
} from "./protocol";

/** Transaction origin of updates that came from the server. */
export const REMOTE = Symbol("remote");

export type Status = "connecting" | "open" | "reconnecting" | "closed";

export class CommandError extends Error {
  constructor(
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Json = Record<string, unknown>;

export interface ConnectionEvents {
  status: (s: Status) => void;
  message: (msg: Json) => void; // every JSON message
  synced: (doc: string) => void;
  docAdded: (doc: string, ydoc: Y.Doc) => void;
  docDropped: (doc: string) => void;
  caps: (caps: Caps) => void;
  reset: () => void;
}

type Listeners = { [K in keyof ConnectionEvents]: Set<ConnectionEvents[K]> };

export class Connection {
  readonly docs = new Map<string, Y.Doc>();
  /** the docs that had their sync step 2 (always a subset of `docs`: a doc dropped leaves both) */
  readonly synced = new Set<string>();
  readonly awareness: awarenessProtocol.Awareness;
  caps: Caps = { notebook: "---", cells: {} };
  epoch: string | null = null;
  status: Status = "connecting";
  welcome: Json | null = null;
  framesIn = 0;
  private ws: WebSocket | null = null;
  private ref = 0;
  private pending = new Map<number, { resolve: (m: Json) => void; reject: (e: Error) => void }>();
  private listeners: Listeners = { status: new Set(), message: new Set(), synced: new Set(), docAdded: new Set(), docDropped: new Set(), caps: new Set(), reset: new Set() };
  private retry = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private closedByUs = false;
  private outbox: Uint8Array[] = [];
  private flushScheduled = false;

  constructor(
    private baseUrl: string,
    readonly notebook: string,
    private loc: { protocol: string; host: string } = window.location,
  ) {
    // a doc of its own: the awareness client id stays the same across reconnects
    this.awareness = new awarenessProtocol.Awareness(new Y.Doc());
    this.awareness.on("update", ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => {
      if (origin === REMOTE) return;
      const changed = added.concat(updated, removed).filter((id) => id === this.awareness.clientID);
      if (changed.length) this.sendBinary(awarenessFrame(awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed)));
    });
  }

  on<K extends keyof ConnectionEvents>(event: K, fn: ConnectionEvents[K]): () => void {
    (this.listeners[event] as Set<ConnectionEvents[K]>).add(fn);
    return () => (this.listeners[event] as Set<ConnectionEvents[K]>).delete(fn);
  }

  private emit<K extends keyof ConnectionEvents>(event: K, ...args: Parameters<ConnectionEvents[K]>): void {
    for (const fn of this.listeners[event] as Set<(...a: Parameters<ConnectionEvents[K]>) => void>) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`hub-collab: ${event} listener failed`, err);
      }
    }
  }

  connect(): void {
    this.closedByUs = false;
    this.welcome = null;
    const ws = new WebSocket(wsUrl(this.loc, this.baseUrl, this.notebook, this.epoch));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.setStatus(this.retry ? "reconnecting" : "connecting");
    ws.onmessage = (ev: MessageEvent) => {
      this.framesIn++;
      if (typeof ev.data === "string") {
        let msg: Json;
        try {
          msg = JSON.parse(ev.data) as Json;
        } catch {
          return;
        }
        this.onJson(msg);
      } else {
        this.onBinary(new Uint8Array(ev.data as ArrayBuffer));
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const p of this.pending.values()) p.reject(new CommandError("disconnected", "the connection was lost"));
      this.pending.clear();
      if (ev.code === 4409) {
        // epoch mismatch: our history is from before a reset
        this.dropAll();
        this.epoch = null;
        this.emit("reset");
        return;
      }
      if (this.closedByUs) {
        this.setStatus("closed");
        return;
      }
      this.setStatus("reconnecting");
      const delay = Math.min(10000, 250 * 2 ** Math.min(this.retry, 6)) * (0.75 + Math.random() / 2);
      this.retry++;
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Reconnect at once (after a lost connection, e.g. the browser went online). */
  reconnectNow(): void {
    if (this.ws || this.closedByUs) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.connect();
  }

  close(): void {
    this.closedByUs = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.ws?.close();
  }

  /** Tests: drop the socket as a network failure would (we reconnect). */
  simulateDrop(): void {
    this.ws?.close(4000, "simulated drop");
  }

  private setStatus(s: Status): void {
    this.status = s;
    this.emit("status", s);
  }

  // -- sending ---------------------------------------------------------------------------------

  /** Queue a binary frame; queued frames of one task are sent as one frame. */
  sendBinary(frame: Uint8Array): void {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.welcome) return; // offline: state vectors catch up later
    this.outbox.push(frame);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const frames = this.outbox;
    this.outbox = [];
    if (!frames.length || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (frames.length === 1) {
      this.ws.send(frames[0] as Uint8Array);
      return;
    }
    let size = 0;
    for (const f of frames) size += f.length;
    const all = new Uint8Array(size);
    let at = 0;
    for (const f of frames) {
      all.set(f, at);
      at += f.length;
    }
    this.ws.send(all);
  }

  /** Send a JSON command; resolves with its `ack`, rejects with {@link CommandError}. */
  command(type: string, fields: Json = {}, timeoutMs = 60000): Promise<Json> {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new CommandError("disconnected", "not connected; try again in a moment"));
        return;
      }
      const ref = ++this.ref;
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new CommandError("timeout", `${type}: no answer from the server`));
      }, timeoutMs);
      this.pending.set(ref, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.flush();
      this.ws.send(JSON.stringify({ type, ref, ...fields }));
    });
  }

  // -- receiving -------------------------------------------------------------------------------

  private onJson(msg: Json): void {
    const type = msg.type;
    if (type === "welcome") {
      this.welcome = msg;
      this.retry = 0;
      this.epoch = typeof msg.epoch === "string" ? msg.epoch : null;
      this.caps = (msg.caps as Caps) ?? this.caps;
      this.setStatus("open");
      this.resubscribe();
      this.emit("caps", this.caps);
    } else if (type === "caps") {
      this.caps = msg as unknown as Caps;
      this.applyCaps();
      this.emit("caps", this.caps);
    } else if (type === "resync") {
      const name = msg.doc;
      if (name === "*") {
        this.dropAll();
      } else if (typeof name === "string") {
        this.resync(name);
      }
    } else if (type === "ack" || type === "error") {
      const ref = msg.ref;
      const p = typeof ref === "number" ? this.pending.get(ref) : undefined;
      if (p) {
        this.pending.delete(ref as number);
        if (type === "ack") p.resolve(msg);
        else p.reject(new CommandError(String(msg.code ?? "error"), String(msg.message ?? "error")));
      }
    }
    this.emit("message", msg);
  }

  private onBinary(data: Uint8Array): void {
    let entries;
    try {
      entries = decodeFrame(data);
    } catch (err) {
      console.error("hub-collab: bad frame from the server", err);
      return;
    }
    const replies = encoding.createEncoder();
    let nReplies = 0;
    const nowSynced: string[] = [];
    for (const e of entries) {
      if (e.kind === MSG_AWARENESS) {
        awarenessProtocol.applyAwarenessUpdate(this.awareness, e.payload, REMOTE);
        continue;
      }
      const doc = this.docs.get(e.doc);
      if (!doc) continue;
      if (e.step === SYNC_STEP1) {
        writeSync(replies, e.doc, SYNC_STEP2, Y.encodeStateAsUpdate(doc, e.payload));
        nReplies++;
      } else {
        Y.applyUpdate(doc, e.payload, REMOTE);
        if (e.step === SYNC_STEP2 && !this.synced.has(e.doc)) {
          this.synced.add(e.doc);
          nowSynced.push(e.doc);
        }
      }
    }
    if (nReplies) this.sendBinary(encoding.toUint8Array(replies));
    for (const name of nowSynced) this.emit("synced", name);
  }

  /** Every doc held had its sync step 2 (in constant time: a page of 5,000 cells holds 10,001 docs). */
  allSynced(): boolean {
    return this.synced.size === this.docs.size;
  }

  // -- subscriptions ---------------------------------------------------------------------------

  readable(name: string): boolean {
    const parts = splitDocName(name);
    if (!parts) return false;
    if (parts[0] === "index") return canRead(this.caps.notebook);
    return canRead(this.caps.cells[parts[1] as string]);
  }

  /** Every doc the caps let us read: index, and cell:/out: of readable cells. */
  private wanted(): string[] {
    const names = [INDEX_DOC];
    for (const [id, rwx] of Object.entries(this.caps.cells)) {
      if (canRead(rwx)) names.push(cellDoc(id), outDoc(id));
    }
    return names;
  }

  /** Drop a doc's local state and sync it again from the server (if we may read it). */
  resync(name: string): void {
    if (!this.docs.has(name)) return;
    this.drop(name);
    if (this.readable(name)) this.subscribe([name]);
  }

  /** After `welcome`: re-subscribe what we hold (keeping offline edits) and subscribe the rest. */
  private resubscribe(): void {
    for (const name of [...this.docs.keys()]) if (!this.readable(name)) this.drop(name);
    const names = new Set([...this.docs.keys(), ...this.wanted()]);
    this.subscribe([...names], true);
    const local = this.awareness.getLocalState();
    if (local) this.awareness.setLocalState(local); // re-announce presence
  }

  private applyCaps(): void {
    for (const name of [...this.docs.keys()]) if (!this.readable(name)) this.drop(name);
    this.subscribe(this.wanted().filter((n) => !this.docs.has(n)));
  }

  /** Subscribe (sync step 1) to docs, creating them if needed; one frame for all. */
  subscribe(names: string[], again = false): void {
    const enc = encoding.createEncoder();
    let n = 0;
    for (const name of names) {
      let doc = this.docs.get(name);
      if (doc && !again) continue;
      if (!doc) {
        doc = this.createDoc(name);
      }
      writeSync(enc, name, SYNC_STEP1, Y.encodeStateVector(doc));
      n++;
    }
    if (n) this.sendBinary(encoding.toUint8Array(enc));
  }

  private createDoc(name: string): Y.Doc {
    // A guid of our own: yjs would otherwise draw one from lib0's uuidv4, which asks
    // the browser for random numbers 31 times (~0.2 ms per doc, 0.4 s for 1,000 cells).
    const doc = new Y.Doc({ guid: `${this.notebook}/${name}` });
    this.docs.set(name, doc);
    if (name.startsWith("cell:")) {
      doc.on("update", (update: Uint8Array, origin: unknown) => {
        if (origin !== REMOTE) this.sendBinary(syncFrame(name, SYNC_UPDATE, update));
      });
    }
    this.emit("docAdded", name, doc);
    return doc;
  }

  private drop(name: string): void {
    const doc = this.docs.get(name);
    if (!doc) return;
    this.docs.delete(name);
    this.synced.delete(name);
    this.emit("docDropped", name);
    doc.destroy();
  }

  private dropAll(): void {
    for (const name of [...this.docs.keys()]) this.drop(name);
  }

  /** The root types of the docs (created on demand, as the server names them). */
  indexCells(): Y.Array<Y.Map<unknown>> | null {
    return this.docs.get(INDEX_DOC)?.getArray<Y.Map<unknown>>("cells") ?? null;
  }

  /** Set fields of our awareness state (`cell`, `cursor`, `typing`, `status`, `user`). */
  setPresence(fields: Json): void {
    const cur = (this.awareness.getLocalState() ?? {}) as Json;
    const next = { ...cur, ...fields };
    for (const k of Object.keys(fields)) if (fields[k] === undefined) delete next[k];
    this.awareness.setLocalState(next);
  }
}
