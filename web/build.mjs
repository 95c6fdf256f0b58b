// Bundles the web view (src/) into the server's embedded static files:
// src/PcieEmu.Server/Web/wwwroot/{index.html,app.js,app.css}. Run by `make web` (npm ci first).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const out = '../src/PcieEmu.Server/Web/wwwroot';
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: 'src/main.jsx' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: out,
  loader: { ".css": "css" },
  legalComments: 'eof',
  logLevel: 'warning',
});
copyFileSync('src/index.html', `${out}/index.html`);
