import { assert } from '../util/assert.js';
import type { LogIndex, Term } from './types.js';

/**
 * The shape of a log without its payloads: which term holds each index, as a list of runs
 * `[startIndex, term]` (terms change rarely, so this stays tiny). Used by the pure core to
 * answer `termAt` synchronously and by the commitlog to track what is on disk.
 *
 * Invariants: `firstIndex <= lastIndex + 1`; runs are sorted by start index with strictly
 * increasing terms; every run starts within `[firstIndex, lastIndex]`; `prevTerm` is the
 * term of `firstIndex - 1` (0 for an empty log that starts at 1).
 */
export class TermRuns {
  private starts: LogIndex[] = [];
  private terms: Term[] = [];

  constructor(
    private first: LogIndex = 1,
    private prev: Term = 0,
    private last: LogIndex = first - 1,
  ) {
    assert(first >= 1 && last === first - 1, 'TermRuns starts empty');
  }

  /** Rebuilds from `runs()` output without walking every index (start-up of a long log). */
  static fromRuns(first: LogIndex, prevTerm: Term, last: LogIndex, runs: ReadonlyArray<readonly [LogIndex, Term]>): TermRuns {
    const termRuns = new TermRuns(first, prevTerm);
    let previousTerm = prevTerm;
    for (const [i, [start, term]] of runs.entries()) {
      assert(start >= first && start <= last, `run start ${start} outside [${first}, ${last}]`);
      assert(i === 0 ? start === first : start > (runs[i - 1] as readonly [LogIndex, Term])[0], 'runs must be ascending and start at the first index');
      assert(term >= previousTerm, 'run terms must not decrease');
      termRuns.starts.push(start);
      termRuns.terms.push(term);
      previousTerm = term;
    }
    assert(runs.length > 0 || last === first - 1, 'a non-empty log needs runs');
    termRuns.last = last;
    return termRuns;
  }

  get firstIndex(): LogIndex { return this.first; }
  get lastIndex(): LogIndex { return this.last; }
  get prevTerm(): Term { return this.prev; }
  get lastTerm(): Term {
    const runCount = this.terms.length;
    return runCount === 0 ? this.prev : (this.terms[runCount - 1] as Term);
  }

  /** Term at `index`, or undefined if the index is outside `[firstIndex - 1, lastIndex]`. */
  termAt(index: LogIndex): Term | undefined {
    if (index === this.first - 1) return this.prev;
    if (index < this.first || index > this.last) return undefined;
    return this.terms[this.runContaining(index)];
  }

  append(index: LogIndex, term: Term): void {
    assert(index === this.last + 1, `term runs: append ${index} after ${this.last}`);
    assert(term >= this.lastTerm, `term runs: term ${term} below last term ${this.lastTerm}`);
    if (this.terms.length === 0 || term !== this.lastTerm) {
      this.starts.push(index);
      this.terms.push(term);
    }
    this.last = index;
  }

  /** Removes every index `>= fromIndex`. */
  truncateFrom(fromIndex: LogIndex): void {
    assert(fromIndex >= this.first, `term runs: truncate ${fromIndex} below first ${this.first}`);
    if (fromIndex > this.last) return;
    while (this.starts.length > 0 && (this.starts[this.starts.length - 1] as number) >= fromIndex) {
      this.starts.pop();
      this.terms.pop();
    }
    this.last = fromIndex - 1;
  }

  /** Forgets every index `<= throughIndex` (retention); keeps the term of the boundary. */
  compactThrough(throughIndex: LogIndex): void {
    if (throughIndex < this.first) return;
    assert(throughIndex <= this.last, `term runs: compact ${throughIndex} beyond last ${this.last}`);
    const boundaryTerm = this.termAt(throughIndex) as Term;
    const firstKept = throughIndex + 1;
    if (firstKept > this.last) {
      this.starts = [];
      this.terms = [];
    } else {
      const run = this.runContaining(firstKept);
      this.starts = this.starts.slice(run);
      this.terms = this.terms.slice(run);
      this.starts[0] = firstKept;
    }
    this.first = firstKept;
    this.prev = boundaryTerm;
  }

  /** Resets to an empty log that starts after `index` with term `term` (a fresh segment). */
  resetAfter(index: LogIndex, term: Term): void {
    this.starts = [];
    this.terms = [];
    this.first = index + 1;
    this.last = index;
    this.prev = term;
  }

  /** The first index that holds the same term as `index` (fast conflict back-off). */
  firstIndexOfTermAt(index: LogIndex): LogIndex {
    assert(index >= this.first && index <= this.last, `term runs: ${index} out of range`);
    return Math.max(this.starts[this.runContaining(index)] as number, this.first);
  }

  /** The last index holding `term`, or undefined if the log has no entry of that term. */
  lastIndexOfTerm(term: Term): LogIndex | undefined {
    for (let run = this.terms.length - 1; run >= 0; run--) {
      const runTerm = this.terms[run] as Term;
      if (runTerm === term) {
        return run === this.terms.length - 1 ? this.last : (this.starts[run + 1] as number) - 1;
      }
      if (runTerm < term) return undefined;
    }
    return undefined;
  }

  /** A copy of the runs, for checkers and descriptions. */
  runs(): Array<readonly [LogIndex, Term]> {
    return this.starts.map((start, i) => [start, this.terms[i] as Term] as const);
  }

  private runContaining(index: LogIndex): number {
    let low = 0;
    let high = this.starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((this.starts[mid] as number) <= index) low = mid;
      else high = mid - 1;
    }
    return low;
  }
}
