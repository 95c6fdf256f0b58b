export * from './bdf.js';
export * from './regs.js';
export * from './igb.js';
export * from './client.js';
export * from './session.js';
