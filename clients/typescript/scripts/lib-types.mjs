// Marks the two compiled trees: lib/esm is ES modules, lib/cjs CommonJS (package.json "exports"
// sends `import` to the first and `require` to the second).
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(join(root, 'lib/esm/package.json'), '{ "type": "module" }\n');
writeFileSync(join(root, 'lib/cjs/package.json'), '{ "type": "commonjs" }\n');
