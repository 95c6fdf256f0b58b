/** The ordered Session stream: posted writes, non-posted reads, automatic batching. */
import type * as grpc from '@grpc/grpc-js';
import type { CompletionStatus } from './gen/pcieemu/v1/common.js';
import type { Completion, Transaction, TransactRequest, TransactResponse } from './gen/pcieemu/v1/session.js';

/** One completion from the stream. */
export interface SessionCompletion {
  tag: bigint;
  status: CompletionStatus;
  value: bigint;
  data: Buffer;
  kind: string;
}

/** A transaction without its tag: one op with every field set (the encoder writes what it is given). */
type TransactionInit = Omit<Transaction, 'tag'>;

interface Pending { resolve: (c: SessionCompletion) => void; reject: (e: Error) => void }

function toCompletion(c: Completion | TransactResponse): SessionCompletion {
  return { tag: BigInt(c.tag), status: c.status, value: BigInt(c.value), data: c.data, kind: c.kind };
}

/**
 * Transactions execute in the order they are issued. Writes are posted: they return at once and
 * are reported only when they fail (see `postedErrors` / `onPostedError`) unless `ack` is asked
 * for. Reads return a promise of their completion and see every earlier write. Transactions
 * issued in the same tick are sent in one message (up to `maxPerMessage`, default 256); call `flush()` to send
 * earlier.
 */
export class Session {
  /** Transactions per message unless session({ maxPerMessage }) says otherwise (the same in every client). */
  static readonly DEFAULT_BATCH = 256;
  /** Completions of posted writes that did not complete successfully. */
  readonly postedErrors: SessionCompletion[] = [];
  private readonly listeners: ((c: SessionCompletion) => void)[] = [];
  private readonly pending = new Map<bigint, Pending>();
  private queue: Transaction[] = [];
  private scheduled = false;
  private nextTag = 1n;
  private failure: Error | undefined;
  private readonly ended: Promise<void>;

  constructor(private readonly call: grpc.ClientDuplexStream<TransactRequest, TransactResponse>, private readonly maxPerMessage: number) {
    call.on('data', (r: TransactResponse) => {
      this.complete(toCompletion(r));
      for (const m of r.more) this.complete(toCompletion(m));
    });
    this.ended = new Promise((resolve) => {
      call.on('error', (e: Error) => { this.fail(e); resolve(); });
      call.on('end', () => { this.fail(new Error('session stream ended')); resolve(); });
    });
  }

  /** Called for each posted write that fails. */
  onPostedError(listener: (c: SessionCompletion) => void): void { this.listeners.push(listener); }

  /** The error that ended the stream, if any. */
  get error(): Error | undefined { return this.failure; }

  configRead(rid: number, offset: number, width: number): Promise<SessionCompletion> {
    return this.issue({ config_read: { rid, offset, width } }, true);
  }
  configWrite(rid: number, offset: number, width: number, value: number): void {
    this.issue({ config_write: { rid, offset, width, value: value >>> 0, ack: false } }, false);
  }
  configWriteAck(rid: number, offset: number, width: number, value: number): Promise<SessionCompletion> {
    return this.issue({ config_write: { rid, offset, width, value: value >>> 0, ack: true } }, true);
  }
  mmioRead(address: bigint, width: number): Promise<SessionCompletion> {
    return this.issue({ mmio_read: { address: address.toString(), width } }, true);
  }
  mmioWrite(address: bigint, width: number, value: bigint): void {
    this.issue({ mmio_write: { address: address.toString(), width, value: value.toString(), ack: false } }, false);
  }
  mmioWriteAck(address: bigint, width: number, value: bigint): Promise<SessionCompletion> {
    return this.issue({ mmio_write: { address: address.toString(), width, value: value.toString(), ack: true } }, true);
  }
  memoryRead(address: bigint, length: number): Promise<SessionCompletion> {
    return this.issue({ memory_read: { address: address.toString(), length } }, true);
  }
  memoryWrite(address: bigint, data: Uint8Array): void {
    this.issue({ memory_write: { address: address.toString(), data: Buffer.from(data), ack: false } }, false);
  }

  /** Sends queued transactions now. */
  flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const chunk = this.queue.splice(0, this.maxPerMessage);
      const [first, ...rest] = chunk;
      this.call.write({ ...first, batch: rest });
    }
  }

  /** Half-closes the stream after flushing and waits until the server has completed everything. */
  async close(): Promise<void> {
    this.flush();
    this.call.end();
    await this.ended;
    if (this.failure && !/session stream ended/.test(this.failure.message)) throw this.failure;
  }

  /** Abandons the stream. */
  cancel(): void { this.call.cancel(); }

  private issue(op: TransactionInit, wantsCompletion: true): Promise<SessionCompletion>;
  private issue(op: TransactionInit, wantsCompletion: false): void;
  private issue(op: TransactionInit, wantsCompletion: boolean): Promise<SessionCompletion> | void {
    if (this.failure) {
      if (wantsCompletion) return Promise.reject(this.failure);
      throw this.failure;
    }
    const tag = this.nextTag++;
    this.queue.push({ ...op, tag: tag.toString() });
    if (this.queue.length >= this.maxPerMessage) this.flush();
    else if (!this.scheduled) { this.scheduled = true; setImmediate(() => this.flush()); }
    if (wantsCompletion) return new Promise((resolve, reject) => this.pending.set(tag, { resolve, reject }));
  }

  private complete(c: SessionCompletion): void {
    const p = this.pending.get(c.tag);
    if (p) { this.pending.delete(c.tag); p.resolve(c); return; }
    // An unsolicited completion is a posted write that failed.
    this.postedErrors.push(c);
    for (const l of this.listeners) l(c);
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
