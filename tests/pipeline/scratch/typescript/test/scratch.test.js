// Scratch TypeScript-client suite of the pipeline test (plain JS: nothing to compile). With
// SCRATCH_MODE=crash a test never settles: node --test reports it under "# cancelled", not "# fail".
const { test } = require('node:test');

test('config.pf0.ids', () => {});
test('cancelled when asked', () => (process.env.SCRATCH_MODE === 'crash' ? new Promise(() => {}) : undefined));
