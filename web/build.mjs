// Bundles the web view (src/) into the server's embedded static files:
// src/PcieEmu.Server/Web/wwwroot/{index.html,app.js,app.css}. Run by `make web` (npm ci first).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

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

// The sources the bundle was built from, hashed (sorted names, then contents): a server test
// (WebBundleTests) recomputes it and fails when web/src or the lock file changed without `make web`.
const hash = createHash('sha256');
for (const f of ['package-lock.json', ...readdirSync('src').sort().map((n) => `src/${n}`)]) {
  hash.update(f + '\n');
  hash.update(readFileSync(f));
}
writeFileSync('../src/PcieEmu.Server/Web/bundle-source.sha256', hash.digest('hex') + '\n');
