/**
 * One queue of one topic: offset → (log index, position in the entry's batch, tag, store
 * time). Columns of typed arrays that double when full, so a queue of millions of messages
 * costs 28 bytes each and no object per message. Built only from committed entries (F14).
 */
export class ConsumeQueue {
  private logIndexes = new Float64Array(64);
  private positions = new Uint32Array(64);
  private tagIds = new Int32Array(64);
  private storeTimes = new Float64Array(64);
  private count = 0;

  /** The next offset to be written; equal to the number of messages ever stored. */
  get maxOffset(): number {
    return this.count;
  }

  append(logIndex: number, position: number, tagId: number, storeTimeMs: number): number {
    if (this.count === this.logIndexes.length) this.grow();
    const offset = this.count++;
    this.logIndexes[offset] = logIndex;
    this.positions[offset] = position;
    this.tagIds[offset] = tagId;
    this.storeTimes[offset] = storeTimeMs;
    return offset;
  }

  logIndexAt(offset: number): number { return this.logIndexes[offset] as number; }
  positionAt(offset: number): number { return this.positions[offset] as number; }
  tagIdAt(offset: number): number { return this.tagIds[offset] as number; }
  storeTimeAt(offset: number): number { return this.storeTimes[offset] as number; }

  /** The first offset stored at or after `timeMs` (maxOffset when none): store times never decrease. */
  offsetAtTime(timeMs: number): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.storeTimes[mid] as number) < timeMs) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  private grow(): void {
    const size = this.logIndexes.length * 2;
    const logIndexes = new Float64Array(size);
    logIndexes.set(this.logIndexes);
    const positions = new Uint32Array(size);
    positions.set(this.positions);
    const tagIds = new Int32Array(size);
    tagIds.set(this.tagIds);
    const storeTimes = new Float64Array(size);
    storeTimes.set(this.storeTimes);
    this.logIndexes = logIndexes;
    this.positions = positions;
    this.tagIds = tagIds;
    this.storeTimes = storeTimes;
  }
}
