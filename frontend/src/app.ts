/** Entry point: read the page's JSON config and start the home or notebook view. */
import "katex/dist/katex.min.css";
import "font-awesome/css/font-awesome.css";
import "@jupyter-widgets/base/css/index.css";
import "@jupyter-widgets/controls/css/widgets.css";
import "./style.css";

import { readConfig } from "./config";
import { HomeView } from "./home";
import { NotebookView } from "./notebook";

function start(): void {
  const root = document.getElementById("app");
  if (!root) return;
  root.textContent = "";
  const cfg = readConfig();
  if (cfg.page === "notebook" && cfg.notebook) new NotebookView(cfg, root);
  else new HomeView(cfg, root);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
