/**
 * A jsdom window as the globals of a test: ipywidgets' packages (jQuery, Backbone,
 * Lumino, noUiSlider) use `window` and `document` as they load, so a test imports this
 * module before them.
 */
import { JSDOM } from "jsdom";

export const dom = new JSDOM("<!doctype html><body></body>", { pretendToBeVisual: true, url: "http://localhost/" });
const g = globalThis as unknown as Record<string, unknown>;
const w = dom.window as unknown as Record<string, unknown>;
// every name the window has and Node has not (its DOM classes, document, getComputedStyle...)
for (const name of Object.getOwnPropertyNames(w)) {
  if (!(name in g) || name === "navigator") Object.defineProperty(g, name, { value: w[name], configurable: true, writable: true });
}
g.window = dom.window;
// jsdom has no DragEvent (Lumino's drag and drop extends it as it loads)
g.DragEvent ??= class DragEvent extends dom.window.MouseEvent {};
