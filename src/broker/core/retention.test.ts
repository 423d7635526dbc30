import { describe, expect, it } from 'vitest';
import { retentionCut, retentionSettingsProblem, type RetentionSettings, type RetentionView } from './retention.js';

const hour = 3_600_000;
const settings = (overrides: Partial<RetentionSettings> = {}): RetentionSettings => ({ maxAgeMs: 72 * hour, logBytesMax: Infinity, diskUsedRatioMax: 0.9, ...overrides });
/** Four 100-byte segments of 10 entries each; entry i was stored at hour i. */
const view = (overrides: Partial<RetentionView> = {}): RetentionView => ({
  segments: [0, 1, 2, 3].map((n) => ({ firstIndex: n * 10 + 1, lastIndex: n * 10 + 10, bytes: 100 })),
  nowMs: 100 * hour,
  newestTimeThrough: (index) => index * hour,
  diskUsedRatio: 0.5,
  ...overrides,
});

describe('retention', () => {
  it('releases segments whose newest message is older than the age limit, oldest first', () => {
    // now = 100 h, limit 72 h: entries stored before 28 h go, so segments ending at 10 and 20.
    expect(retentionCut(settings(), view())).toBe(20);
  });

  it('releases the oldest segments while the log is over its size limit, never the newest segment', () => {
    expect(retentionCut(settings({ maxAgeMs: 1_000 * hour, logBytesMax: 250 }), view())).toBe(20);
    expect(retentionCut(settings({ maxAgeMs: 1_000 * hour, logBytesMax: 1 }), view())).toBe(30);
  });

  it('releases one segment per round while the disk is too full', () => {
    expect(retentionCut(settings({ maxAgeMs: 1_000 * hour }), view({ diskUsedRatio: 0.95 }))).toBe(10);
  });

  it('releases nothing when every limit holds, or the log is one segment', () => {
    expect(retentionCut(settings({ maxAgeMs: 1_000 * hour }), view())).toBe(0);
    expect(retentionCut(settings({ logBytesMax: 1 }), view({ segments: [{ firstIndex: 1, lastIndex: 10, bytes: 100 }] }))).toBe(0);
  });

  it('does not release for size or disk pressure what a delayed message pins (no node could delete it); age still releases', () => {
    const bySize = settings({ maxAgeMs: 1_000 * hour, logBytesMax: 1 });
    expect(retentionCut(bySize, view({ pinnedFrom: 25 }))).toBe(20);
    expect(retentionCut(bySize, view({ pinnedFrom: 5 }))).toBe(0);
    expect(retentionCut(settings({ maxAgeMs: 1_000 * hour }), view({ diskUsedRatio: 0.95, pinnedFrom: 10 }))).toBe(0);
    expect(retentionCut(settings(), view({ pinnedFrom: 5 }))).toBe(20);
  });

  it('names settings that make no sense', () => {
    expect(retentionSettingsProblem(settings({ maxAgeMs: 0 }))).toMatch(/age/);
    expect(retentionSettingsProblem(settings({ logBytesMax: -5 }))).toMatch(/size/);
    expect(retentionSettingsProblem(settings({ diskUsedRatioMax: 1.5 }))).toMatch(/disk usage/);
    expect(retentionSettingsProblem(settings({ maxAgeMs: Number.NaN }))).toMatch(/age/);
    expect(retentionSettingsProblem(settings())).toBeUndefined();
  });
});
