// Build the UI into ../hub_collab/static/dist (app.js, app.css, KaTeX fonts), or the unit tests.
import * as esbuild from "esbuild";
import { readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = new Set(process.argv.slice(2));
// ipywidgets' manager sanitizes HTML descriptions with sanitize-html: the page's DOMPurify does it
const alias = { "sanitize-html": join(here, "src/sanitize-html.ts") };

if (args.has("--tests")) {
  const out = join(here, ".test-build");
  rmSync(out, { recursive: true, force: true });
  const entryPoints = readdirSync(join(here, "test")).filter((f) => f.endsWith(".test.ts")).map((f) => join(here, "test", f));
    // jsdom stays a Node package; the rest is bundled (ipywidgets' packages are not Node modules)
  await esbuild.build({ entryPoints, outdir: out, bundle: true, platform: "node", format: "esm", target: "node20", external: ["jsdom"], alias, banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" }, outExtension: { ".js": ".mjs" }, logLevel: "warning" });
} else {
  const options = {
    entryPoints: { app: join(here, "src/app.ts") },
    outdir: join(here, "../hub_collab/static/dist"),
    bundle: true,
    alias,
    format: "iife",
    target: ["es2022"],
    minify: !args.has("--dev"),
    sourcemap: true,
    legalComments: "linked",
    loader: { ".woff2": "file", ".woff": "file", ".ttf": "file", ".eot": "file", ".otf": "file", ".svg": "file" },
    assetNames: "assets/[name]-[hash]",
    logLevel: "info",
  };
  if (args.has("--watch")) {
    const ctx = await esbuild.context(options);
    await ctx.watch();
  } else {
    await esbuild.build(options);
  }
}
