/**
 * The timer store against a trivial model (an array, sorted when fired), by fast-check
 * model-based runs over both implementations: MemoryTimerStore and TimerFileStore. Commands are
 * add (due before now, within the wheel, or beyond its span and up to maxDelayMs), cancel (of
 * pending, fired, cancelled and unknown records), fireThrough (small steps inside a slot, and
 * jumps of days); between them the runs take checkpoints (a memory store's snapshot with its
 * records; a file store's sync and positions-only snapshot), crash back to the last checkpoint
 * (a file store also cut back by a power failure) and replay the commands since, which must
 * give the very results of the first run, hand the records over in a snapshot with records
 * (to a fresh store or in place), and read an old checkpoint through reader(). After every
 * step the store's counts, next due time and least log index equal the model's, and at
 * checkpoints its snapshot with records equals the model's bytes (canonical encoding).
 *
 * A tiny wheel (16 slots of 1 s, cascade buckets of 4) puts most records beyond its span, so
 * cascades, slots fired in several steps and late adds into the slot being fired all happen
 * in nearly every run. A negative control shows the property catches a store that loses the
 * last due record of a partly fired slot.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../util/assert.js';
import { TimerFileStore } from '../../server/timer-files.js';
import { SnapshotReader, SnapshotWriter } from './state-snapshot.js';
import { MemoryTimerStore, type TimerRecord, type TimerStore, type TimerStoreLimits, type TimerWheelOptions } from './timer-store.js';

const precisionMs = 1000;
const limits: TimerStoreLimits = { maxDelayMs: 100_000, precisionMs };
const tinyWheel: TimerWheelOptions = { wheelSlots: 16, cascadeSlots: 4 };
const epochMs = 1_700_000_000_000;

// ---- the model -------------------------------------------------------------------------------------

const byKey = (a: TimerRecord, b: TimerRecord): number => a.dueMs - b.dueMs || a.logIndex - b.logIndex || a.position - b.position;

export class ModelTimers {
  pending: TimerRecord[] = [];
  firedThroughMs = -Infinity;

  add(record: TimerRecord): void {
    this.pending.push(record);
  }

  cancel(logIndex: number, position: number, dueMs: number): boolean {
    const i = this.pending.findIndex((r) => r.logIndex === logIndex && r.position === position && r.dueMs === dueMs);
    if (i < 0) return false;
    this.pending.splice(i, 1);
    return true;
  }

  fireThrough(throughMs: number): TimerRecord[] {
    const due = this.pending.filter((r) => r.dueMs <= throughMs).sort(byKey);
    this.pending = this.pending.filter((r) => r.dueMs > throughMs);
    this.firedThroughMs = throughMs;
    return due;
  }

  nextDueMs(): number | undefined {
    return this.pending.length === 0 ? undefined : Math.min(...this.pending.map((r) => r.dueMs));
  }

  minPendingLogIndex(): number | undefined {
    return this.pending.length === 0 ? undefined : Math.min(...this.pending.map((r) => r.logIndex));
  }

  /** The canonical with-records encoding, written out field by field. */
  encode(): Uint8Array {
    const writer = new SnapshotWriter();
    writer.f64(this.firedThroughMs);
    const sorted = [...this.pending].sort(byKey);
    writer.u32(sorted.length);
    for (const r of sorted) writer.f64(r.dueMs);
    for (const r of sorted) writer.f64(r.logIndex);
    for (const r of sorted) writer.u32(r.position);
    for (const r of sorted) writer.f64(r.topicCreatedAt);
    for (const r of sorted) writer.u32(r.queueId);
    for (const r of sorted) writer.raw(new Uint8Array(new Int32Array([r.tagId]).buffer));
    for (const r of sorted) writer.f64(r.storeTimeMs);
    return writer.finish();
  }
}

export function encodeStore(store: TimerStore, withRecords: boolean): Uint8Array {
  const writer = new SnapshotWriter();
  store.encodeInto(writer, withRecords);
  return writer.finish();
}

export function restoreStore(store: TimerStore, bytes: Uint8Array, withRecords: boolean): TimerStore {
  const reader = new SnapshotReader(bytes);
  store.restore(reader, withRecords);
  expect(reader.remaining).toBe(0);
  return store;
}

export const fire = (store: TimerStore, throughMs: number): TimerRecord[] => {
  const visited: TimerRecord[] = [];
  store.fireThrough(throughMs, (record) => visited.push(record));
  return visited;
};

// ---- the subjects ----------------------------------------------------------------------------------

/** One implementation under test, with its way of checkpointing, crashing and handing over. */
interface Subject {
  readonly store: TimerStore;
  /** Takes the snapshot a crash comes back to. */
  checkpoint(): void;
  /** Crashes (with `powerCut`, a file store also loses a random part of its unsynced writes) and restores the last checkpoint. */
  crash(powerCut: number | undefined): void;
  /** Sends the records in a snapshot with records, to a fresh store or into this one. */
  handOver(inPlace: boolean): void;
  /** The last checkpoint, restored read-only from the current store and encoded with its records. */
  readCheckpoint(): Uint8Array;
  dispose(): void;
}

const roots: string[] = [];
afterAll(() => { for (const root of roots) fs.rmSync(root, { recursive: true, force: true }); });

class MemorySubject implements Subject {
  store: MemoryTimerStore;
  private checkpointBytes: Uint8Array;
  constructor(private readonly options: TimerWheelOptions) {
    this.store = new MemoryTimerStore(limits, options);
    this.checkpointBytes = encodeStore(this.store, true);
  }
  checkpoint(): void { this.checkpointBytes = encodeStore(this.store, true); }
  crash(): void { this.store = restoreStore(new MemoryTimerStore(limits, this.options), this.checkpointBytes, true) as MemoryTimerStore; }
  handOver(inPlace: boolean): void {
    const bytes = encodeStore(this.store, true);
    if (!inPlace) this.store = new MemoryTimerStore(limits, this.options);
    restoreStore(this.store, bytes, true);
  }
  readCheckpoint(): Uint8Array { return encodeStore(restoreStore(this.store.reader(), this.checkpointBytes, true), true); }
  dispose(): void {}
}

class FileSubject implements Subject {
  store: TimerFileStore;
  private checkpointBytes: Uint8Array;
  private checkpointDir: string;
  private dirs = 0;
  constructor(private readonly root: string) {
    this.store = this.open(this.freshDir());
    this.store.sync();
    this.checkpointBytes = encodeStore(this.store, false);
    this.checkpointDir = this.store.dir;
  }
  checkpoint(): void {
    this.store.sync();
    this.checkpointBytes = encodeStore(this.store, false);
    this.checkpointDir = this.store.dir;
  }
  crash(powerCut: number | undefined): void {
    if (powerCut !== undefined) {
      let seed = powerCut;
      this.store.powerFail((max) => { seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648; return seed % max; });
    }
    this.store.close();
    this.store = restoreStore(this.open(this.checkpointDir), this.checkpointBytes, false) as TimerFileStore;
  }
  handOver(inPlace: boolean): void {
    const bytes = encodeStore(this.store, true);
    if (!inPlace) {
      this.store.close();
      this.store = this.open(this.freshDir());
    }
    restoreStore(this.store, bytes, true);
  }
  readCheckpoint(): Uint8Array {
    // The checkpoint's files are where it was taken; the current store may have moved on (or elsewhere).
    const view = this.open(this.checkpointDir).reader();
    return encodeStore(restoreStore(view, this.checkpointBytes, false), true);
  }
  dispose(): void { this.store.close(); }
  private freshDir(): string { return path.join(this.root, `d${this.dirs++}`); }
  private open(dir: string): TimerFileStore {
    return new TimerFileStore({ dir, limits, ...tinyWheel, recordsPerFile: 256, cachePages: 2, powerLossTestMode: true });
  }
}

// ---- the commands -------------------------------------------------------------------------------------

type Op =
  | { readonly kind: 'add'; readonly delaysMs: readonly number[] }
  | { readonly kind: 'tick'; readonly ms: number }
  | { readonly kind: 'fire'; readonly offsetMs: number }
  | { readonly kind: 'fire-step'; readonly stepMs: number }
  | { readonly kind: 'cancel'; readonly pick: number; readonly which: 'pending' | 'any' | 'other-due' }
  | { readonly kind: 'checkpoint' }
  | { readonly kind: 'crash'; readonly powerCut: number | undefined }
  | { readonly kind: 'hand-over'; readonly inPlace: boolean }
  | { readonly kind: 'read-checkpoint' };

const delayArb = fc.oneof(
  fc.integer({ min: -4 * precisionMs, max: 3 * precisionMs }), // past, or within a few slots
  fc.integer({ min: 0, max: 1500 }), // this slot or the next: fired in steps
  fc.integer({ min: 0, max: 20 * precisionMs }), // around the wheel's span
  fc.integer({ min: 0, max: limits.maxDelayMs }), // anywhere up to the maximum
  fc.constantFrom(0, 999, 1000, 1001, limits.maxDelayMs), // slot edges
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('add' as const), delaysMs: fc.array(delayArb, { minLength: 1, maxLength: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 1500 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 * 24 * 3600 * 1000 }) }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('fire' as const), offsetMs: fc.oneof(fc.integer({ min: -3000, max: 300 }), fc.integer({ min: 0, max: 4 * limits.maxDelayMs })) }) },
  // The leader's cadence: a little further than the last fire, so one slot fires in several steps.
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('fire-step' as const), stepMs: fc.integer({ min: 0, max: 400 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat(), which: fc.constantFrom('pending' as const, 'any' as const, 'other-due' as const) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'checkpoint' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), powerCut: fc.option(fc.nat(), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hand-over' as const), inPlace: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'read-checkpoint' as const }) },
);

type Command =
  | { readonly kind: 'add'; readonly record: TimerRecord; readonly nowMs: number }
  | { readonly kind: 'cancel'; readonly logIndex: number; readonly position: number; readonly dueMs: number }
  | { readonly kind: 'fire'; readonly throughMs: number };

function execute(store: TimerStore, command: Command): unknown {
  switch (command.kind) {
    case 'add': store.add(command.record, command.nowMs); return undefined;
    case 'cancel': return store.cancel(command.logIndex, command.position, command.dueMs);
    case 'fire': return fire(store, command.throughMs);
  }
}

function executeModel(model: ModelTimers, command: Command): unknown {
  switch (command.kind) {
    case 'add': model.add(command.record); return undefined;
    case 'cancel': return model.cancel(command.logIndex, command.position, command.dueMs);
    case 'fire': return model.fireThrough(command.throughMs);
  }
}

/** Runs `ops` against the subject and the model; throws (an expect) at the first difference. */
function runAgainstModel(subject: Subject, ops: readonly Op[]): void {
  const model = new ModelTimers();
  let nowMs = epochMs;
  let logIndex = 1;
  const added: TimerRecord[] = [];
  /** Commands since the last checkpoint, with what they returned. */
  let sinceCheckpoint: { command: Command; result: unknown }[] = [];
  let modelAtCheckpoint = model.encode();
  const step = (command: Command): void => {
    const result = execute(subject.store, command);
    expect(result).toEqual(executeModel(model, command));
    sinceCheckpoint.push({ command, result });
  };
  const compare = (): void => {
    expect(subject.store.pendingCount).toBe(model.pending.length);
    expect(subject.store.nextDueMs()).toBe(model.nextDueMs());
    expect(subject.store.minPendingLogIndex()).toBe(model.minPendingLogIndex());
  };
  for (const op of ops) {
    switch (op.kind) {
      case 'add':
        op.delaysMs.forEach((delayMs, position) => {
          const record: TimerRecord = {
            dueMs: Math.max(0, nowMs + delayMs), logIndex, position, topicCreatedAt: 7, queueId: position % 3, tagId: position - 1, storeTimeMs: nowMs,
          };
          added.push(record);
          step({ kind: 'add', record, nowMs });
        });
        logIndex++;
        nowMs += 10;
        break;
      case 'tick':
        nowMs += op.ms;
        break;
      case 'fire':
        step({ kind: 'fire', throughMs: Math.max(model.firedThroughMs, nowMs + op.offsetMs) });
        break;
      case 'fire-step':
        step({ kind: 'fire', throughMs: model.firedThroughMs === -Infinity ? nowMs : model.firedThroughMs + op.stepMs });
        nowMs = Math.max(nowMs, model.firedThroughMs);
        break;
      case 'cancel': {
        const from = op.which === 'pending' && model.pending.length > 0 ? model.pending : added;
        const target = from[op.pick % Math.max(1, from.length)];
        if (target === undefined) break;
        step({ kind: 'cancel', logIndex: target.logIndex, position: target.position, dueMs: target.dueMs + (op.which === 'other-due' ? precisionMs : 0) });
        break;
      }
      case 'checkpoint':
        subject.checkpoint();
        modelAtCheckpoint = model.encode();
        expect(encodeStore(subject.store, true)).toEqual(modelAtCheckpoint);
        sinceCheckpoint = [];
        break;
      case 'crash':
        subject.crash(op.powerCut);
        // Replay of the same committed commands gives the same results as the first time.
        for (const { command, result } of sinceCheckpoint) expect(execute(subject.store, command)).toEqual(result);
        break;
      case 'hand-over':
        subject.handOver(op.inPlace);
        break;
      case 'read-checkpoint':
        expect(subject.readCheckpoint()).toEqual(modelAtCheckpoint);
        break;
    }
    compare();
  }
  expect(encodeStore(subject.store, true)).toEqual(model.encode());
  // Whatever is left fires in order, however far ahead.
  step({ kind: 'fire', throughMs: Math.max(model.firedThroughMs, nowMs + 10 * limits.maxDelayMs) });
  compare();
}

const opsArb = fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' });

describe('timer store, model-based', () => {
  it('MemoryTimerStore matches the model (tiny wheel)', () => {
    fc.assert(fc.property(opsArb, (ops) => runAgainstModel(new MemorySubject(tinyWheel), ops)), { numRuns: 150 });
  });

  it('MemoryTimerStore matches the model (default wheel: everything within its span)', () => {
    fc.assert(fc.property(opsArb, (ops) => runAgainstModel(new MemorySubject({}), ops)), { numRuns: 60 });
  });

  it('TimerFileStore matches the model across checkpoints, crashes, power cuts and replay', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-timers-'));
    roots.push(root);
    let run = 0;
    fc.assert(fc.property(opsArb, (ops) => {
      const subject = new FileSubject(path.join(root, `r${run++}`));
      try {
        runAgainstModel(subject, ops);
      } finally {
        subject.dispose();
      }
    }), { numRuns: 60 });
  });

  it('negative control: a store that drops the last due record of a partly fired slot is caught', () => {
    const result = fc.check(fc.property(opsArb, (ops) => runAgainstModel(new MemorySubject({ ...tinyWheel, negativeControl: 'drop-last-due-of-partial-slot' }), ops)), { numRuns: 150 });
    expect(result.failed).toBe(true);
  });
});

// ---- directed cases --------------------------------------------------------------------------------

const record = (dueMs: number, logIndex: number, position = 0): TimerRecord => ({
  dueMs, logIndex, position, topicCreatedAt: 1, queueId: 0, tagId: 0, storeTimeMs: epochMs,
});

describe('MemoryTimerStore', () => {
  it('fires one slot in several steps, and a late add into the slot being fired at the next step', () => {
    const store = new MemoryTimerStore(limits);
    store.add(record(epochMs + 300, 1), epochMs);
    store.add(record(epochMs + 100, 2), epochMs);
    store.add(record(epochMs + 700, 3), epochMs);
    expect(store.nextDueMs()).toBe(epochMs + 100);
    expect(fire(store, epochMs + 300).map((r) => r.logIndex)).toEqual([2, 1]);
    expect(store.nextDueMs()).toBe(epochMs + 700);
    store.add(record(epochMs + 50, 4), epochMs + 400); // already past
    expect(store.nextDueMs()).toBe(epochMs + 50);
    expect(fire(store, epochMs + 400).map((r) => r.logIndex)).toEqual([4]);
    expect(fire(store, epochMs + 999).map((r) => r.logIndex)).toEqual([3]);
    expect(store.pendingCount).toBe(0);
  });

  it('a jump of days visits everything due, in order, across cascade buckets', () => {
    const store = new MemoryTimerStore(limits, tinyWheel);
    const expected: TimerRecord[] = [];
    for (let i = 0; i < 200; i++) {
      const r = record(epochMs + ((i * 7919) % limits.maxDelayMs), 1 + i, i % 5);
      store.add(r, epochMs);
      expected.push(r);
    }
    expect(store.minPendingLogIndex()).toBe(1);
    expect(fire(store, epochMs + 5 * 24 * 3600 * 1000)).toEqual(expected.sort(byKey));
    expect(store.nextDueMs()).toBeUndefined();
  });

  it('cancels a pending record once, wherever it is; not a fired or unknown one', () => {
    const store = new MemoryTimerStore(limits, tinyWheel);
    store.add(record(epochMs + 90_000, 5), epochMs); // beyond the wheel: in a cascade bucket
    store.add(record(epochMs + 2_000, 6), epochMs);
    store.add(record(epochMs + 2_500, 7), epochMs);
    expect(store.cancel(5, 0, epochMs + 90_001)).toBe(false);
    expect(store.cancel(5, 0, epochMs + 90_000)).toBe(true);
    expect(store.cancel(5, 0, epochMs + 90_000)).toBe(false);
    expect(store.cancel(6, 0, epochMs + 2_000)).toBe(true);
    expect(store.nextDueMs()).toBe(epochMs + 2_500);
    expect(store.minPendingLogIndex()).toBe(7);
    expect(fire(store, epochMs + 2_600).map((r) => r.logIndex)).toEqual([7]);
    expect(store.cancel(7, 0, epochMs + 2_500)).toBe(false);
    expect(fire(store, epochMs + 100_000)).toEqual([]);
  });

  it('asserts at its boundary: delays beyond the maximum, bad fields, fire going back', () => {
    const store = new MemoryTimerStore(limits);
    expect(() => store.add(record(epochMs + limits.maxDelayMs + 1, 1), epochMs)).toThrow(InvariantViolation);
    expect(() => store.add({ ...record(epochMs, 1), position: -1 }, epochMs)).toThrow(/position -1/);
    expect(() => store.add({ ...record(epochMs, 1), dueMs: Number.NaN }, epochMs)).toThrow(InvariantViolation);
    fire(store, epochMs);
    expect(() => fire(store, epochMs - 1)).toThrow(/fired through/);
    expect(() => store.fireThrough(epochMs, () => store.add(record(epochMs, 2), epochMs))).not.toThrow(); // nothing due: no visit
    store.add(record(epochMs, 3), epochMs);
    expect(() => store.fireThrough(epochMs + 1, () => store.add(record(epochMs, 4), epochMs))).toThrow(/while firing/);
  });

  it('refuses a positions-only snapshot and does not write one', () => {
    const store = new MemoryTimerStore(limits);
    expect(() => encodeStore(store, false)).toThrow(InvariantViolation);
    const file = new SnapshotWriter();
    file.f64(-Infinity);
    expect(() => store.restore(new SnapshotReader(file.finish()), false)).toThrow(/relies on timer files/);
  });

  it('keeps memory to the log since the oldest live slot, not the history: 200k records through it in rounds of 10k', () => {
    const store = new MemoryTimerStore(limits);
    let most = 0;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 10_000; i++) store.add(record(epochMs + round * 1000 + (i % 997), 1 + round * 10_000 + i), epochMs + round * 1000);
      fire(store, epochMs + round * 1000 + 999);
      most = Math.max(most, store.heapBytes);
    }
    expect(store.pendingCount).toBe(0);
    // Two rounds' records (the slot fired last stays until the next fire passes it) at 60 bytes, room as much again, a 16k-record scratch.
    expect(most).toBeLessThan(4 * 20_000 * 60 + 16_384 * 44 + 200_000);
  });
});
