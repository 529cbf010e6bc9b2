// What a yjs client shows for the updates it is sent: Y.Docs by name, driven by JSON lines
// on stdin, one answer line per command (tests/test_divergence.py's yjs reader).
//
//   {"cmd": "apply", "doc": name, "update": base64}  -> {"ok": true}
//   {"cmd": "text", "doc": name}                     -> {"ok": true, "text": Y.Text "source"}
//   {"cmd": "drop", "doc": name}                     -> {"ok": true}
//
// A command that fails answers {"ok": false, "error": message}. End of stdin exits.

import readline from 'node:readline'
import * as Y from 'yjs'

const docs = new Map()

function doc (name) {
  let d = docs.get(name)
  if (d === undefined) {
    d = new Y.Doc()
    d.getText('source')
    docs.set(name, d)
  }
  return d
}

function handle (msg) {
  switch (msg.cmd) {
    case 'apply':
      Y.applyUpdate(doc(msg.doc), Buffer.from(msg.update, 'base64'))
      return {}
    case 'text':
      return { text: doc(msg.doc).getText('source').toString() }
    case 'drop': {
      const d = docs.get(msg.doc)
      if (d !== undefined) d.destroy()
      docs.delete(msg.doc)
      return {}
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(msg.cmd)}`)
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false })
rl.on('line', (line) => {
  if (!line.trim()) return
  let answer
  try {
    answer = { ok: true, ...handle(JSON.parse(line)) }
  } catch (err) {
    answer = { ok: false, error: String(err && err.message ? err.message : err) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
})
rl.on('close', () => process.exit(0))
