/** The page's configuration, embedded by the server as JSON (never executed). */
export interface PageConfig {
  page: "home" | "notebook";
  base_url: string;
  hub_prefix?: string;
  xsrf: string;
  user: { name: string; admin: boolean; groups: string[] };
  notebook?: string;
}

export function readConfig(doc: Document = document): PageConfig {
  const el = doc.getElementById("hub-collab-config");
  if (!el || !el.textContent) throw new Error("hub-collab: the page has no configuration");
  return JSON.parse(el.textContent) as PageConfig;
}
