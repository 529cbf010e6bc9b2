/**
 * Syntax colours for a code cell's preview (the static text shown until its editor is
 * mounted: cells scrolled past do not get an editor): the same parser and the same
 * highlight style as the editor, so mounting it changes nothing on screen.
 */
import { defaultHighlightStyle } from "@codemirror/language";
import { pythonLanguage } from "@codemirror/lang-python";
import { highlightCode } from "@lezer/highlight";
import { StyleModule } from "style-mod";

let mounted = false;

/** Fill `el` with `code`, coloured as Python. */
export function highlightPython(el: HTMLElement, code: string): void {
  if (!mounted && defaultHighlightStyle.module) {
    StyleModule.mount(el.ownerDocument, defaultHighlightStyle.module);
    mounted = true;
  }
  const doc = el.ownerDocument;
  const frag = doc.createDocumentFragment();
  highlightCode(
    code,
    pythonLanguage.parser.parse(code),
    defaultHighlightStyle,
    (text, classes) => {
      if (!classes) frag.appendChild(doc.createTextNode(text));
      else {
        const span = doc.createElement("span");
        span.className = classes;
        span.textContent = text;
        frag.appendChild(span);
      }
    },
    () => frag.appendChild(doc.createTextNode("\n")),
  );
  el.replaceChildren(frag);
}
