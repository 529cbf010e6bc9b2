/**
 * Stands in for the `sanitize-html` package in the bundle (build.mjs aliases it here):
 * ipywidgets' widget manager uses it for descriptions that allow HTML. The page's own
 * DOMPurify (render.ts, with its link and image rules) does the work with the tags and
 * attributes the caller allows, so the bundle does not carry a second HTML parser.
 */
import { purifier } from "./render";

interface Options {
  allowedTags?: string[];
  allowedAttributes?: Record<string, string[]>;
}

export default function sanitize(html: string, options: Options = {}): string {
  const attrs = new Set<string>();
  for (const names of Object.values(options.allowedAttributes ?? {})) for (const n of names) if (!n.includes("*")) attrs.add(n);
  return purifier(window).sanitize(html, {
    ALLOWED_TAGS: options.allowedTags ?? [],
    ALLOWED_ATTR: [...attrs],
    ALLOW_ARIA_ATTR: Object.values(options.allowedAttributes ?? {}).some((names) => names.includes("aria-*")),
    ALLOW_DATA_ATTR: false,
  });
}
