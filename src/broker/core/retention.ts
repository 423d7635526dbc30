/**
 * Retention (SPEC F16): which prefix of the log the broker may let go. Pure: the leader runs
 * it on its own view (its segments, its disk, the applied state's store times) and proposes
 * the answer as a `retention` entry, so every node drops the same consume-queue entries at
 * the same index; each node then deletes its own segments once a snapshot covers them.
 *
 * A segment goes when it is older than `maxAgeMs` (its newest message), or oldest first while
 * the log is larger than `logBytesMax` or the disk fuller than `diskUsedRatioMax`. The newest
 * segment is never a candidate (it is being written). A pending delayed message (F8) pins the
 * log from its send entry (`pinnedFrom`): no node deletes a segment from there on until it is
 * delivered, so releasing those segments' messages for size or disk would free nothing and
 * only lose them; only age releases past the pin (the pinned bodies stay).
 */
import { assert } from '../../util/assert.js';

export interface RetentionSettings {
  /** RocketMQ's fileReservedTime: 72 h by default. */
  readonly maxAgeMs: number;
  /** The log's size limit in bytes (Infinity: no size limit). */
  readonly logBytesMax: number;
  /** Delete oldest segments while the disk is fuller than this (0..1; 1: never for disk use). */
  readonly diskUsedRatioMax: number;
}

export const defaultRetentionSettings: RetentionSettings = { maxAgeMs: 72 * 3_600_000, logBytesMax: Infinity, diskUsedRatioMax: 0.9 };

export interface RetentionSegment {
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly bytes: number;
}

export interface RetentionView {
  /** Oldest first; the last one is being written. */
  readonly segments: readonly RetentionSegment[];
  readonly nowMs: number;
  /** Store time of the newest message at or before `logIndex` (undefined: none stored there). */
  newestTimeThrough(logIndex: number): number | undefined;
  /** Fraction of the disk in use (undefined when unknown). */
  readonly diskUsedRatio: number | undefined;
  /** The send entry of the oldest pending delayed message (BrokerState.pendingTimersFrom); undefined: none. */
  readonly pinnedFrom?: number | undefined;
}

/** A problem with the settings, named for the operator; undefined when they make sense. */
export function retentionSettingsProblem(settings: RetentionSettings): string | undefined {
  if (!(settings.maxAgeMs > 0)) return `retention age must be a positive number of hours, not ${settings.maxAgeMs / 3_600_000}`;
  if (!(settings.logBytesMax > 0)) return `retention size must be a positive number of bytes, not ${settings.logBytesMax}`;
  if (!(settings.diskUsedRatioMax > 0 && settings.diskUsedRatioMax <= 1)) return `retention disk usage must be a percentage in 1..100, not ${settings.diskUsedRatioMax * 100}`;
  return undefined;
}

/** The last log index retention releases (everything at or below it), or 0 for nothing. */
export function retentionCut(settings: RetentionSettings, view: RetentionView): number {
  assert(retentionSettingsProblem(settings) === undefined, 'retention settings were validated at start-up');
  const candidates = view.segments.slice(0, -1);
  let remainingBytes = view.segments.reduce((sum, segment) => sum + segment.bytes, 0);
  // Disk usage is only known for now: release one segment per round while it is too high.
  let diskPressure = view.diskUsedRatio !== undefined && view.diskUsedRatio > settings.diskUsedRatioMax;
  let cut = 0;
  for (const segment of candidates) {
    if (segment.lastIndex < segment.firstIndex) continue; // empty: nothing to release
    const newest = view.newestTimeThrough(segment.lastIndex);
    const expired = newest !== undefined && newest < view.nowMs - settings.maxAgeMs;
    const pinned = segment.lastIndex >= (view.pinnedFrom ?? Infinity);
    const oversize = remainingBytes > settings.logBytesMax && !pinned;
    if (!expired && !oversize && !(diskPressure && !pinned)) break;
    cut = segment.lastIndex;
    remainingBytes -= segment.bytes;
    diskPressure = false;
  }
  return cut;
}
