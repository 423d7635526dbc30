/**
 * TermRuns against a naive model (one term per index in an array), as etcd's quick tests do
 * for its clever pure functions: every query agrees after any sequence of appends,
 * truncations and compactions, and rebuilding from runs() gives the same answers.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { TermRuns } from './term-runs.js';

type Op = { kind: 'append'; count: number; bump: number } | { kind: 'truncate'; back: number } | { kind: 'compact'; forward: number };
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('append' as const), count: fc.integer({ min: 1, max: 8 }), bump: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('truncate' as const), back: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ kind: fc.constant('compact' as const), forward: fc.integer({ min: 0, max: 6 }) }),
);

it('agrees with a naive model under appends, truncations and compactions', () => {
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
    const runs = new TermRuns();
    let first = 1;
    let prevTerm = 0;
    const terms: number[] = []; // terms[i] is the term of index first + i
    let term = 1;
    for (const step of ops) {
      if (step.kind === 'append') {
        term += step.bump;
        for (let i = 0; i < step.count; i++) {
          runs.append(first + terms.length, term);
          terms.push(term);
        }
      } else if (step.kind === 'truncate') {
        const from = Math.max(first, first + terms.length - step.back);
        runs.truncateFrom(from);
        terms.length = from - first;
        term = Math.max(term, terms[terms.length - 1] ?? prevTerm);
      } else {
        const through = Math.min(first - 1 + step.forward, first - 1 + terms.length);
        if (through < first) continue;
        runs.compactThrough(through);
        prevTerm = terms[through - first] as number;
        terms.splice(0, through - first + 1);
        first = through + 1;
      }
      const rebuilt = TermRuns.fromRuns(runs.firstIndex, runs.prevTerm, runs.lastIndex, runs.runs());
      for (const view of [runs, rebuilt]) {
        expect(view.firstIndex).toBe(first);
        expect(view.lastIndex).toBe(first + terms.length - 1);
        expect(view.termAt(first - 1)).toBe(prevTerm);
        terms.forEach((t, i) => expect(view.termAt(first + i)).toBe(t));
        expect(view.termAt(first + terms.length)).toBeUndefined();
        terms.forEach((t, i) => {
          let start = i;
          while (start > 0 && terms[start - 1] === t) start--;
          expect(view.firstIndexOfTermAt(first + i)).toBe(first + start);
          expect(view.lastIndexOfTerm(t)).toBe(first + terms.lastIndexOf(t));
        });
      }
    }
  }), { numRuns: 300 });
});
