export * from './bdf.js';
export * from './regs.js';
export * from './igb.js';
export * from './client.js';
export * from './session.js';
export { Ring, RingStatus, RING_FIELDS } from './ring.js';
export type { RingCompletion, RingOptions } from './ring.js';
