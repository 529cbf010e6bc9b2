/**
 * Remote cursors and selections of other people in one cell's editor, from
 * awareness states `{user: {name}, cell, cursor: {anchor, head}}` (relative
 * positions as JSON). Only states whose `cell` is this cell are shown, so a
 * position at the start of an empty text never appears in every cell.
 */
import { RangeSetBuilder, StateEffect, type Extension } from "@codemirror/state";
import { Decoration, type DecorationSet, EditorView, ViewPlugin, type ViewUpdate, WidgetType } from "@codemirror/view";
import type { Awareness } from "y-protocols/awareness";
import * as Y from "yjs";

import { userColor } from "./dom";

const refresh = StateEffect.define<null>();

class Caret extends WidgetType {
  constructor(
    readonly name: string,
    readonly color: string,
  ) {
    super();
  }
  eq(other: Caret): boolean {
    return other.name === this.name && other.color === this.color;
  }
  toDOM(): HTMLElement {
    const caret = document.createElement("span");
    caret.className = "remote-caret";
    caret.style.borderColor = this.color;
    const label = document.createElement("span");
    label.className = "remote-caret-label";
    label.style.backgroundColor = this.color;
    label.textContent = this.name;
    caret.appendChild(label);
    return caret;
  }
  ignoreEvent(): boolean {
    return true;
  }
}

interface CursorState {
  user?: { name?: string };
  cell?: string;
  cursor?: { anchor?: unknown; head?: unknown } | null;
}

function resolve(json: unknown, ytext: Y.Text): number | null {
  if (!json || !ytext.doc) return null;
  try {
    const rel = Y.createRelativePositionFromJSON(json);
    const abs = Y.createAbsolutePositionFromRelativePosition(rel, ytext.doc);
    if (!abs || abs.type !== ytext) return null;
    return abs.index;
  } catch {
    return null;
  }
}

export function remoteCursors(awareness: Awareness, cellId: string, ytext: Y.Text): Extension {
  const plugin = ViewPlugin.fromClass(
    class {
      decorations: DecorationSet;
      private off: () => void;
      constructor(private view: EditorView) {
        this.decorations = this.build();
        const onChange = ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }): void => {
          const ids = added.concat(updated, removed);
          const relevant = ids.some((id) => {
            if (id === awareness.clientID) return false;
            const st = awareness.getStates().get(id) as CursorState | undefined;
            return !st || st.cell === cellId || this.shown.has(id);
          });
          if (relevant) queueMicrotask(() => this.view.dom.isConnected && this.view.dispatch({ effects: refresh.of(null) }));
        };
        awareness.on("change", onChange);
        this.off = () => awareness.off("change", onChange);
      }
      shown = new Set<number>();
      build(): DecorationSet {
        const marks: { from: number; to: number; deco: Decoration }[] = [];
        const len = this.view.state.doc.length;
        this.shown.clear();
        awareness.getStates().forEach((raw, clientId) => {
          if (clientId === awareness.clientID) return;
          const st = raw as CursorState;
          if (st.cell !== cellId || !st.cursor) return;
          const anchor = resolve(st.cursor.anchor, ytext);
          const head = resolve(st.cursor.head, ytext);
          if (anchor === null || head === null) return;
          const name = st.user?.name ?? "someone";
          const color = userColor(name);
          this.shown.add(clientId);
          const from = Math.min(anchor, head, len);
          const to = Math.min(Math.max(anchor, head), len);
          if (from < to) {
            marks.push({ from, to, deco: Decoration.mark({ attributes: { style: `background-color: color-mix(in srgb, ${color} 22%, transparent)` }, class: "remote-selection" }) });
          }
          const at = Math.min(head, len);
          marks.push({ from: at, to: at, deco: Decoration.widget({ widget: new Caret(name, color), side: 1 }) });
        });
        marks.sort((a, b) => a.from - b.from || a.to - b.to);
        const builder = new RangeSetBuilder<Decoration>();
        for (const m of marks) builder.add(m.from, m.to, m.deco);
        return builder.finish();
      }
      update(u: ViewUpdate): void {
        if (u.docChanged || u.transactions.some((t) => t.effects.some((e) => e.is(refresh)))) this.decorations = this.build();
      }
      destroy(): void {
        this.off();
      }
    },
    { decorations: (v) => v.decorations },
  );
  return plugin;
}

/** Our own cursor as awareness JSON (relative positions survive concurrent edits). */
export function cursorJson(ytext: Y.Text, anchor: number, head: number): { anchor: unknown; head: unknown } {
  return {
    anchor: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, anchor)),
    head: Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, head)),
  };
}
