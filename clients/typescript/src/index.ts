export * from './bdf';
export * from './regs';
export * from './igb';
export * from './client';
export * from './session';
export { loadProto } from './proto';
export type { PcieEmuProto } from './proto';
