/**
 * Icons drawn as inline SVG, shipped in the bundle: emoji such as the lock, the
 * bell and the speech bubble have no glyph in many fonts (Debian's Chromium
 * shows a missing-glyph box), and nothing is fetched from elsewhere. Each icon
 * is decorative (`aria-hidden`): the element that holds it carries the words.
 */

const NS = "http://www.w3.org/2000/svg";

/** Outlines in a 16 × 16 box, stroked with the text colour. */
const SHAPES = {
  lock: ["M4.5 7V5a3.5 3.5 0 0 1 7 0v2", "M3 7h10v7H3z", "M8 9.5v2"],
  bell: ["M4 11V7a4 4 0 0 1 8 0v4l1.5 1.5h-11z", "M6.5 14a1.5 1.5 0 0 0 3 0"],
  comment: ["M2 3h12v8H6l-3.5 3v-3H2z"],
} as const;

export type IconName = keyof typeof SHAPES;

/** each icon built once per page, then cloned (a 5,000-cell notebook shows thousands) */
const built = new Map<IconName, SVGSVGElement>();

export function icon(name: IconName): SVGSVGElement {
  let svg = built.get(name);
  if (!svg || svg.ownerDocument !== document) {
    svg = draw(name);
    built.set(name, svg);
  }
  return svg.cloneNode(true) as SVGSVGElement;
}

function draw(name: IconName): SVGSVGElement {
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "1em");
  svg.setAttribute("height", "1em");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon icon-${name}`);
  for (const d of SHAPES[name]) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}
