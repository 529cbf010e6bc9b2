// A Node.js client of hub-collab's wire protocol v1, built on yjs + y-protocols.
//
// It is driven by tests/test_interop.py through JSON lines: one command per line on
// stdin, one reply per command on stdout (same "id"), plus unsolicited
// {"event": ...} lines. Usage:
//
//   node interop_client.mjs            # then write commands to stdin
//
// Commands (every reply has "id" and "ok"; on failure "ok": false and "error"):
//   {"cmd": "connect", "url": "ws://.../api/notebooks/<id>/ws", "token": "...", "epoch"?: "...", "all"?: true}
//        -> {"welcome": {...}, "welcome_ms": t}
//                                    opens the socket (Authorization: token header),
//                                    waits for `welcome`, subscribes to `index` (with "all":
//                                    in the same frame to every cell welcome's caps let us
//                                    read, as the browser does; else to cells once index is here)
//   {"cmd": "synced", "timeout_ms"?: N}
//        -> {"cells": [ids], "since_connect_ms": t}
//                                    waits until index and every readable cell:/out: doc is
//                                    synced (t: from the connect command until then)
//   {"cmd": "edit", "cell": id, "index"?: n, "before"?: s, "after"?: s, "delete"?: n, "insert"?: s}
//        -> {"length": n}            one transaction on the cell's Y.Text `source`; `index` is
//                                    in yjs units (UTF-16 code units); `before`/`after` place
//                                    the edit at the first occurrence of that string instead
//   {"cmd": "awareness", "state": {...} | null}
//        -> {"client_id": n}         sets the local awareness state (sent on `index`)
//   {"cmd": "sources"}  -> {"cells": [{id, cell_type}], "sources": {id: text}}
//   {"cmd": "state"}    -> sources, plus "awareness" {clientId: state}, "errors", "caps",
//                          "frames", "bytes"
//   {"cmd": "wait", "cell": id, "source"?: s, "contains"?: s, "timeout_ms"?: N}
//        -> {"source": text}         waits until the cell is in the index and its doc is
//                                    synced (and its source equals / contains the string)
//   {"cmd": "relpos", "cell": id, "index": n, "assoc"?: 0|-1}
//        -> {"relpos": base64}       Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(source, n, assoc))
//   {"cmd": "abspos", "cell": id, "relpos": base64}
//        -> {"index": n | null}      Y.createAbsolutePositionFromRelativePosition in the cell's doc
//   {"cmd": "close"}    -> {"close_code": n}; then the process exits with status 0
//
// End of stdin closes the connection and exits too.

import readline from 'node:readline'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

const MSG_SYNC = 0
const MSG_AWARENESS = 1
const INDEX = 'index'
const REMOTE = Symbol('remote') // transaction origin of everything received

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

class Connection {
  constructor () {
    this.ws = null
    this.docs = new Map() // doc name -> Y.Doc
    this.synced = new Set()
    this.caps = {}
    this.welcome = null
    this.errors = []
    this.closeCode = null
    this.frames = 0
    this.bytes = 0
    this.waiters = new Set()
    // presence lives on its own Y.Doc: `index` may be dropped by a resync, presence not
    this.presenceDoc = new Y.Doc()
    this.awareness = new awarenessProtocol.Awareness(this.presenceDoc)
    this.awareness.on('update', ({ added, updated, removed }, origin) => {
      if (origin !== 'local') return
      const changed = added.concat(updated, removed)
      const enc = encoding.createEncoder()
      encoding.writeVarString(enc, INDEX)
      encoding.writeVarUint(enc, MSG_AWARENESS)
      encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed))
      this.send(encoding.toUint8Array(enc))
    })
  }

  connect (url, token, epoch, all = false) {
    this.t0 = performance.now()
    const full = epoch ? `${url}${url.includes('?') ? '&' : '?'}epoch=${encodeURIComponent(epoch)}` : url
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(full, { headers: { Authorization: `token ${token}` }, perMessageDeflate: false })
      ws.binaryType = 'nodebuffer'
      this.ws = ws
      let settled = false
      ws.on('unexpected-response', (req, res) => {
        settled = true
        reject(new Error(`HTTP ${res.statusCode} on upgrade`))
        req.destroy()
      })
      ws.on('error', (err) => {
        if (!settled) { settled = true; reject(err) }
      })
      ws.on('message', (data, isBinary) => {
        this.frames += 1
        this.bytes += data.length
        try {
          if (isBinary) {
            this.onBinary(new Uint8Array(data.buffer, data.byteOffset, data.length))
          } else {
            const msg = JSON.parse(data.toString('utf8'))
            this.onJson(msg)
            if (msg.type === 'welcome' && !settled) {
              settled = true
              this.welcomeMs = performance.now() - this.t0
              const wanted = [INDEX]
              if (all) {
                for (const [cid, rwx] of Object.entries(this.caps.cells || {})) {
                  if (rwx.includes('r')) wanted.push(`cell:${cid}`, `out:${cid}`)
                }
              }
              this.subscribe(wanted)
              resolve(msg)
            }
          }
        } catch (err) {
          emit({ event: 'client_error', message: String(err && err.stack ? err.stack : err) })
        }
        this.poke()
      })
      ws.on('close', (code) => {
        this.closeCode = code
        if (!settled) { settled = true; reject(new Error(`closed with ${code} before welcome`)) }
        emit({ event: 'closed', code })
        this.poke()
      })
    })
  }

  send (bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes, { binary: true })
  }

  // -- receiving ----------------------------------------------------------------------

  onJson (msg) {
    switch (msg.type) {
      case 'welcome':
        this.welcome = msg
        this.caps = msg.caps || {}
        break
      case 'caps':
        this.caps = msg
        for (const name of [...this.docs.keys()]) if (!this.readable(name)) this.drop(name)
        if (this.synced.has(INDEX)) this.subscribeReadable()
        break
      case 'resync':
        if (msg.doc === '*') {
          for (const name of [...this.docs.keys()]) this.drop(name)
        } else if (this.docs.has(msg.doc)) {
          this.drop(msg.doc)
          if (this.readable(msg.doc)) this.subscribe([msg.doc])
        }
        break
      case 'error':
        this.errors.push(msg)
        emit({ event: 'server_error', message: msg })
        break
      default:
        break
    }
  }

  onBinary (data) {
    const decoder = decoding.createDecoder(data)
    const replies = []
    let indexChanged = false
    // a frame may hold several entries: varString(doc) ‖ y-protocols message
    while (decoding.hasContent(decoder)) {
      const name = decoding.readVarString(decoder)
      const kind = decoding.readVarUint(decoder)
      if (kind === MSG_AWARENESS) {
        const update = decoding.readVarUint8Array(decoder)
        awarenessProtocol.applyAwarenessUpdate(this.awareness, update, REMOTE)
        continue
      }
      if (kind !== MSG_SYNC) throw new Error(`unknown message type ${kind} for ${name}`)
      const doc = this.docs.get(name)
      if (doc === undefined) {
        // a doc we dropped: skip its message
        decoding.readVarUint(decoder)
        decoding.readVarUint8Array(decoder)
        continue
      }
      const reply = encoding.createEncoder()
      encoding.writeVarString(reply, name)
      encoding.writeVarUint(reply, MSG_SYNC)
      const prefix = encoding.length(reply)
      const step = syncProtocol.readSyncMessage(decoder, reply, doc, REMOTE)
      if (encoding.length(reply) > prefix) replies.push(encoding.toUint8Array(reply)) // our step 2
      if (step === syncProtocol.messageYjsSyncStep2) this.synced.add(name)
      if (name === INDEX && step !== syncProtocol.messageYjsSyncStep1) indexChanged = true
    }
    if (replies.length) this.send(Buffer.concat(replies))
    if (indexChanged && this.synced.has(INDEX)) this.subscribeReadable()
  }

  // -- subscriptions ------------------------------------------------------------------

  readable (name) {
    if (name === INDEX) return true
    const cid = name.slice(name.indexOf(':') + 1)
    const mode = (this.caps.cells || {})[cid]
    return typeof mode === 'string' && mode.includes('r')
  }

  subscribe (names) {
    const parts = []
    for (const name of names) {
      if (this.docs.has(name)) continue
      // our own guid: lib0's uuidv4 draws 31 random numbers (~0.2 ms a doc in Node)
      const doc = new Y.Doc({ guid: name })
      this.docs.set(name, doc)
      if (name.startsWith('cell:')) {
        doc.getText('source')
        doc.on('update', (update, origin) => {
          if (origin === REMOTE || this.docs.get(name) !== doc) return
          const enc = encoding.createEncoder()
          encoding.writeVarString(enc, name)
          encoding.writeVarUint(enc, MSG_SYNC)
          syncProtocol.writeUpdate(enc, update)
          this.send(encoding.toUint8Array(enc))
        })
      }
      const enc = encoding.createEncoder()
      encoding.writeVarString(enc, name)
      encoding.writeVarUint(enc, MSG_SYNC)
      syncProtocol.writeSyncStep1(enc, doc)
      parts.push(encoding.toUint8Array(enc))
    }
    if (parts.length) this.send(Buffer.concat(parts)) // one frame for the whole batch
  }

  subscribeReadable () {
    const wanted = []
    for (const { id } of this.cells()) {
      for (const name of [`cell:${id}`, `out:${id}`]) {
        if (!this.docs.has(name) && this.readable(name)) wanted.push(name)
      }
    }
    this.subscribe(wanted)
  }

  drop (name) {
    const doc = this.docs.get(name)
    this.docs.delete(name)
    this.synced.delete(name)
    if (doc) doc.destroy()
  }

  // -- reading ------------------------------------------------------------------------

  cells () {
    const index = this.docs.get(INDEX)
    if (!index) return []
    return index.getArray('cells').toArray().map((m) => ({ id: m.get('id'), cell_type: m.get('cell_type') }))
  }

  text (cid) {
    const doc = this.docs.get(`cell:${cid}`)
    if (!doc) throw new Error(`cell ${cid} is not subscribed`)
    return doc.getText('source')
  }

  sources () {
    const sources = {}
    for (const { id } of this.cells()) {
      if (this.synced.has(`cell:${id}`)) sources[id] = this.text(id).toString()
    }
    return { cells: this.cells(), sources }
  }

  allSynced () {
    if (!this.synced.has(INDEX)) return false
    for (const { id } of this.cells()) {
      for (const name of [`cell:${id}`, `out:${id}`]) {
        if (this.readable(name) && !this.synced.has(name)) return false
      }
    }
    return true
  }

  // -- waiting ------------------------------------------------------------------------

  poke () {
    for (const w of [...this.waiters]) w()
  }

  waitFor (predicate, timeoutMs = 10000, what = 'condition') {
    return new Promise((resolve, reject) => {
      const check = () => {
        let ok = false
        try { ok = predicate() } catch (err) { ok = false }
        if (ok) {
          clearTimeout(timer)
          this.waiters.delete(check)
          resolve()
        } else if (this.closeCode !== null) {
          clearTimeout(timer)
          this.waiters.delete(check)
          reject(new Error(`connection closed (${this.closeCode}) while waiting for ${what}`))
        }
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      }, timeoutMs)
      this.waiters.add(check)
      check()
    })
  }

  async close () {
    this.awareness.destroy()
    if (this.ws && this.ws.readyState !== WebSocket.CLOSED) {
      const ws = this.ws
      const closed = new Promise((resolve) => ws.once('close', resolve))
      ws.close(1000)
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2000))])
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
    }
    for (const doc of this.docs.values()) doc.destroy()
    return this.closeCode
  }
}

const conn = new Connection()

async function handle (msg) {
  switch (msg.cmd) {
    case 'connect':
      return { welcome: await conn.connect(msg.url, msg.token, msg.epoch, msg.all === true), welcome_ms: conn.welcomeMs }
    case 'synced': {
      let at = null
      await conn.waitFor(() => {
        const ok = conn.allSynced()
        if (ok && at === null) at = performance.now()
        return ok
      }, msg.timeout_ms ?? 30000, 'every readable doc synced')
      return { cells: conn.cells().map((c) => c.id), since_connect_ms: at - conn.t0 }
    }
    case 'edit': {
      const doc = conn.docs.get(`cell:${msg.cell}`)
      if (!doc || !conn.synced.has(`cell:${msg.cell}`)) throw new Error(`cell ${msg.cell} is not synced`)
      const text = doc.getText('source')
      let index = msg.index ?? 0
      if (msg.before !== undefined || msg.after !== undefined) {
        const needle = msg.before ?? msg.after
        const at = text.toString().indexOf(needle) // a UTF-16 index, as Y.Text's
        if (at < 0) throw new Error(`${JSON.stringify(needle)} not in cell ${msg.cell}`)
        index = msg.before !== undefined ? at : at + needle.length
      }
      doc.transact(() => {
        if (msg.delete) text.delete(index, msg.delete)
        if (msg.insert) text.insert(index, msg.insert)
      })
      return { index, length: text.length }
    }
    case 'awareness':
      conn.awareness.setLocalState(msg.state ?? null)
      return { client_id: conn.awareness.clientID }
    case 'sources':
      return conn.sources()
    case 'state': {
      const awareness = {}
      for (const [cid, st] of conn.awareness.getStates()) awareness[cid] = st
      return { ...conn.sources(), awareness, errors: conn.errors, caps: conn.caps, frames: conn.frames, bytes: conn.bytes }
    }
    case 'wait': {
      const name = `cell:${msg.cell}`
      await conn.waitFor(() => {
        if (!conn.cells().some((c) => c.id === msg.cell) || !conn.synced.has(name)) return false
        const src = conn.text(msg.cell).toString()
        if (msg.source !== undefined && src !== msg.source) return false
        if (msg.contains !== undefined && !src.includes(msg.contains)) return false
        return true
      }, msg.timeout_ms ?? 10000, `cell ${msg.cell}`)
      return { source: conn.text(msg.cell).toString() }
    }
    case 'relpos': {
      // Y.createRelativePositionFromTypeIndex in the cell's source, encoded and base64'd,
      // as the browser anchors a comment
      const text = conn.text(msg.cell)
      const rel = Y.createRelativePositionFromTypeIndex(text, msg.index, msg.assoc ?? 0)
      return { relpos: Buffer.from(Y.encodeRelativePosition(rel)).toString('base64') }
    }
    case 'abspos': {
      // where an encoded relative position is now, in the cell's source (UTF-16 units)
      const doc = conn.docs.get(`cell:${msg.cell}`)
      const rel = Y.decodeRelativePosition(Buffer.from(msg.relpos, 'base64'))
      const abs = Y.createAbsolutePositionFromRelativePosition(rel, doc)
      return { index: abs === null ? null : abs.index }
    }
    case 'close':
      return { close_code: await conn.close() }
    default:
      throw new Error(`unknown command ${JSON.stringify(msg.cmd)}`)
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false })
let queue = Promise.resolve()
rl.on('line', (line) => {
  if (!line.trim()) return
  // commands run one after the other, in the order received
  queue = queue.then(async () => {
    let msg
    try {
      msg = JSON.parse(line)
    } catch (err) {
      emit({ ok: false, error: `invalid JSON: ${err.message}` })
      return
    }
    try {
      const result = await handle(msg)
      emit({ id: msg.id, ok: true, ...result })
      if (msg.cmd === 'close') process.exit(0)
    } catch (err) {
      emit({ id: msg.id, ok: false, error: String(err && err.message ? err.message : err) })
    }
  })
})
rl.on('close', () => {
  queue.then(() => conn.close()).then(() => process.exit(0))
})
