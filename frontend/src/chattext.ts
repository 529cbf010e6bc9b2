/** Chat text → tokens (text, mention, cell reference). Pure; rendering uses textContent only. */

export type ChatToken = { kind: "text"; text: string } | { kind: "mention"; name: string; text: string } | { kind: "ref"; cellId: string; readable: boolean; text: string };

export interface ChatRef {
  cell_id: string;
  readable: boolean;
}

const TOKEN = /(^|[^\w@])@([A-Za-z0-9._+-]+(?:@[A-Za-z0-9.-]+)?)|#([A-Za-z0-9_-]{1,64})/g;

export function tokenize(text: string, mentions: string[], refs: ChatRef[]): ChatToken[] {
  const out: ChatToken[] = [];
  const refMap = new Map(refs.map((r) => [r.cell_id, r.readable]));
  let last = 0;
  const push = (t: string): void => {
    if (!t) return;
    const prev = out[out.length - 1];
    if (prev && prev.kind === "text") prev.text += t;
    else out.push({ kind: "text", text: t });
  };
  for (const m of text.matchAll(TOKEN)) {
    const start = m.index as number;
    if (m[2] !== undefined) {
      let name = m[2];
      // a trailing dot ends the sentence, not the name
      while (name.endsWith(".") && !mentions.includes(name)) name = name.slice(0, -1);
      if (!mentions.includes(name)) continue;
      push(text.slice(last, start) + (m[1] ?? ""));
      out.push({ kind: "mention", name, text: "@" + name });
      last = start + (m[1] ?? "").length + 1 + name.length;
    } else if (m[3] !== undefined) {
      if (!refMap.has(m[3])) continue;
      push(text.slice(last, start));
      out.push({ kind: "ref", cellId: m[3], readable: refMap.get(m[3]) as boolean, text: m[0] });
      last = start + m[0].length;
    }
  }
  push(text.slice(last));
  return out;
}
