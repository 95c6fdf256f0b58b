/** Bus/device/function helpers. A routing ID (RID) is bus << 8 | device << 3 | function
 *  (with ARI: bus << 8 | function, function 0-255). */

/** Builds a routing ID from bus, device and function. */
export function rid(bus: number, device: number, fn: number): number {
  if (!Number.isInteger(bus) || bus < 0 || bus > 255) throw new RangeError(`bus must be 0-255 (was ${bus})`);
  if (!Number.isInteger(device) || device < 0 || device > 31) throw new RangeError(`device must be 0-31 (was ${device})`);
  if (!Number.isInteger(fn) || fn < 0 || fn > 7) throw new RangeError(`function must be 0-7 (was ${fn})`);
  return (bus << 8) | (device << 3) | fn;
}

/** Builds an ARI routing ID from bus and an 8-bit function number. */
export function ariRid(bus: number, fn: number): number {
  if (!Number.isInteger(bus) || bus < 0 || bus > 255) throw new RangeError(`bus must be 0-255 (was ${bus})`);
  if (!Number.isInteger(fn) || fn < 0 || fn > 255) throw new RangeError(`function must be 0-255 (was ${fn})`);
  return (bus << 8) | fn;
}

const hex = (v: number, n: number) => v.toString(16).padStart(n, '0');

/** Formats a routing ID lspci-style: "bb:dd.f". */
export function formatBdf(r: number): string {
  if (!Number.isInteger(r) || r < 0 || r > 0xffff) throw new RangeError(`rid must be 0-0xFFFF (was ${r})`);
  return `${hex(r >> 8, 2)}:${hex((r >> 3) & 0x1f, 2)}.${r & 7}`;
}

/** Parses "bb:dd.f" (optionally with a "0000:" segment prefix) into a routing ID. Throws with the reason. */
export function parseBdf(text: string): number {
  const m = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text.trim());
  if (!m) throw new SyntaxError(`'${text}' is not a BDF (expected bb:dd.f, e.g. 01:00.0)`);
  if (m[1] !== undefined && parseInt(m[1], 16) !== 0) throw new RangeError(`'${text}': only segment 0 exists`);
  const dev = parseInt(m[3], 16);
  if (dev > 31) throw new RangeError(`'${text}': device must be 00-1f`);
  return rid(parseInt(m[2], 16), dev, parseInt(m[4], 10));
}
