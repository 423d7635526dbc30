import { describe, expect, it } from 'vitest';
import type { Op } from './history.js';
import { unseenOverTime } from './report.js';

let index = 0;
const op = (timeS: number, fields: Omit<Op, 'index' | 'time'>): Op => ({ index: index++, time: timeS * 1e9, ...fields });

describe('unseen over time', () => {
  it('counts an acknowledged value from its second until the second a reader first sees it, per queue', () => {
    const ops: Op[] = [
      op(0.1, { type: 'invoke', process: 0, f: 'enqueue', value: '0-0' }),
      op(1.2, { type: 'ok', process: 0, f: 'enqueue', value: '0-0', queue: 0, offset: 0 }),
      op(1.3, { type: 'ok', process: 1, f: 'enqueue', value: '1-0', queue: 1, offset: 0 }),
      op(1.5, { type: 'ok', process: 'r', f: 'read', reads: [[1, 0, '1-0']] }), // seen within its second: never unseen
      op(2.1, { type: 'ok', process: 2, f: 'enqueue', value: '2-0', queue: 0, offset: 1 }),
      op(3.4, { type: 'ok', process: 'c', f: 'dequeue', reads: [[0, 0, '0-0']] }),
      op(4.0, { type: 'ok', process: 'c', f: 'dequeue', reads: [[0, 0, '0-0']] }), // a second read changes nothing
      op(5.5, { type: 'ok', process: 'd', f: 'drain', reads: [[0, 1, '2-0']] }),
    ];
    const { queues, perQueue } = unseenOverTime(ops);
    expect(queues).toEqual([0]);
    expect(perQueue.get(0)).toEqual([0, 1, 2, 1, 1, 0]);
  });

  it('keeps a value that is never read unseen to the end', () => {
    const ops: Op[] = [op(0.5, { type: 'ok', process: 0, f: 'enqueue', value: '0-0', queue: 2, offset: 0 }), op(2.5, { type: 'ok', process: 'd', f: 'drain', reads: [] })];
    expect(unseenOverTime(ops).perQueue.get(2)).toEqual([1, 1, 1]);
  });
});
