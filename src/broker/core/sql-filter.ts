/**
 * Broker-side SQL92 message filters (F11): RocketMQ's subset of SQL92 over a message's user
 * properties (and `TAGS`, its tag). An expression is compiled once into closures; matching a
 * message walks them without re-parsing and, on the common paths, without allocating.
 *
 * The behaviour is RocketMQ's own (apache/rocketmq `filter/`), including its surprises,
 * because a consumer moving to us must get the messages RocketMQ would have given it:
 *
 * - Grammar (`parser/SelectorParser.jj`). Precedence from loosest: OR; AND; `=`, `<>`,
 *   `IS [NOT] NULL`; `>`, `>=`, `<`, `<=`, `[NOT] BETWEEN`, `[NOT] IN`, `[NOT] CONTAINS`,
 *   `[NOT] STARTSWITH`, `[NOT] ENDSWITH`; then the prefix operators `NOT`, `-` and `+`. So
 *   `NOT a = 1` is `(NOT a) = 1`. Every binary level is left-associative. There is no `!=`,
 *   no LIKE, no hex or octal. Identifiers are ASCII `[A-Za-z_$][A-Za-z0-9_$]*` and
 *   case-sensitive; keywords are case-insensitive. Integers are `0` or `[1-9][0-9]*` with an
 *   optional `L` (ignored); decimals are `5.`, `5.5`, `.5`, `5E10`, `5.5e-3`. Strings are
 *   single-quoted with `''` for a quote. `IN`, `CONTAINS`, `STARTSWITH`, `ENDSWITH` take
 *   string literals only. Comments: `/* … *\/`, and `-- …` only when a line break ends it.
 * - Compile-time checks (`expression/ComparisonExpression.java`, `ConstantExpression.java`,
 *   `SelectorParser.asBooleanExpression`): `>`-family and BETWEEN operands may not be string or
 *   boolean literals, NULL, or conditions; `=`/`<>` operands may not be NULL, and `TRUE = 5`
 *   (a boolean literal left of a string or number literal) is rejected; literal BETWEEN bounds
 *   must be ordered (`BETWEEN 10 AND 0` fails; NOT BETWEEN is not checked); IN needs a property
 *   on its left; AND, OR, NOT and the whole expression need a condition or a bare property. An
 *   integer above 2^63−1 fails, and so does a decimal literal that is infinite or zero
 *   (`createFloat` rejects anything below Double.MIN_VALUE, so `a > 0.0` does not compile).
 * - Values are Java objects: a property is a String; an integer literal an Integer (Long above
 *   2^31−1); a decimal literal a Double. Comparing a string property with a number converts the
 *   string with the number's class: `Integer.valueOf` for an Integer (so `'3.5'` or `' 3'`
 *   against `3` is an error, `'+3'` is fine), `Long.valueOf`, or `Double.valueOf` (which trims,
 *   and accepts `NaN`, `Infinity`, a trailing `d`/`f` and hex floats). Comparing two properties
 *   with `>`-family converts both with `Double.valueOf`; with `=` they compare as strings. A
 *   string compared with TRUE or FALSE reads as true exactly when it is "true" in any case.
 * - Missing properties (`LogicExpression.java`, `UnaryExpression.java`): three-valued logic. A
 *   comparison with a missing operand is unknown, and NOT, AND, OR treat unknown as SQL does;
 *   only TRUE delivers. Two quirks are RocketMQ's own: `a = 'x'` is unknown when `a` is
 *   missing but `'x' = a` is FALSE (so `'x' <> a` delivers), and `a = b` is TRUE when both are
 *   missing. `[NOT] CONTAINS` and friends are FALSE (not unknown) for a missing property, as is
 *   anything with an empty search string. A bare property used as a condition is unknown when
 *   missing and FALSE otherwise (its String is never a Boolean), so `NOT a` means "a is set".
 * - Failures: where RocketMQ's evaluation throws (a conversion above fails, or `=` has a
 *   Boolean on its left and a String on its right), the broker catches it and does not deliver
 *   (`broker/filter/ExpressionMessageFilter.java`), whatever the rest of the expression says.
 *   Here that is the `failed` value, which propagates through NOT, AND and OR except where
 *   Java's left-to-right short-circuit skips it (`b = 1 OR a > 5` delivers when b is 1).
 *
 * One deliberate difference: RocketMQ's grammar does not demand the end of input, so it
 * silently ignores whatever follows a complete expression (`a = 1 b = 2` compiles as `a = 1`).
 * We reject trailing text, since ignoring half of a filter delivers messages nobody asked for.
 */
import { assert, InvariantViolation, unreachable } from '../../util/assert.js';
import { FilterError } from './filter.js';

/** Longer expressions are rejected before lexing; RocketMQ has no limit, we bound the work. */
export const sqlExpressionLengthMax = 4096;
/** Nesting of parentheses and the prefix operators NOT, - and +, which recurse in the parser. */
export const sqlNestingDepthMax = 64;

/**
 * A bad SQL expression. `name` stays FilterError's (its type is that literal, and filter.ts is
 * not ours to widen), so callers that map FilterError to ILLEGAL_FILTER_EXPRESSION keep working.
 */
export class SqlFilterError extends FilterError {
  constructor(
    readonly expression: string,
    /** 1-based position in UTF-16 code units over the whole expression (a line break is one). */
    readonly column: number,
    readonly reason: string,
  ) {
    super(`SQL expression ${quoteExcerpt(expression, column)} at column ${column}: ${reason}`);
  }
}

/** A message's property by name, undefined when the message does not have it; `TAGS` is the tag. */
export type PropertyLookup = (name: string) => string | undefined;

export interface SqlFilter {
  readonly expression: string;
  /** True only when the expression is TRUE for the message: unknown and failed do not deliver. */
  matches(properties: PropertyLookup): boolean;
}

/** Compiles `expression` once; throws SqlFilterError where RocketMQ would refuse the subscription. */
export function compileSqlFilter(expression: string): SqlFilter {
  assert(typeof expression === 'string', 'compileSqlFilter: expression must be a string');
  if (expression.length > sqlExpressionLengthMax) {
    throw new SqlFilterError(expression, sqlExpressionLengthMax + 1, `expected at most ${sqlExpressionLengthMax} characters, found ${expression.length}`);
  }
  const parser = new Parser(expression);
  const root = parser.parseSelector();
  assert(isCondition(root), 'the parser returns a condition');
  return new CompiledSqlFilter(expression, compileCondition(root), Object.freeze([...parser.propertyNames]));
}

/**
 * The property names the expression mentions, each once, in order of first appearance. A
 * message's other properties cannot affect `matches`, so a caller may skip decoding them.
 */
export function referencedProperties(filter: SqlFilter): readonly string[] {
  assert(filter instanceof CompiledSqlFilter, 'referencedProperties: the filter must come from compileSqlFilter');
  return filter.propertyNames;
}

class CompiledSqlFilter implements SqlFilter {
  constructor(
    readonly expression: string,
    private readonly decide: Decide,
    readonly propertyNames: readonly string[],
  ) {}

  matches(properties: PropertyLookup): boolean {
    return this.decide(properties) === true;
  }
}

// ---------------------------------------------------------------------------------------------
// Java values and conversions
// ---------------------------------------------------------------------------------------------

/** The class of a number decides how a string is converted when compared with it. */
type JavaNumber =
  | { readonly type: 'int'; readonly value: number }
  | { readonly type: 'long'; readonly value: bigint }
  | { readonly type: 'double'; readonly value: number };
type NumberType = JavaNumber['type'];
/** A Java value: String, Boolean, a Number, or null (a missing property, the NULL literal). */
type Literal = string | boolean | JavaNumber | null;
type Present = Exclude<Literal, null>;

/** Where RocketMQ's evaluation throws: the message is not delivered, whatever else holds. */
const failed = Symbol('evaluation failed');
type Failed = typeof failed;
type Value = Literal | Failed;
/** A condition's outcome: TRUE, FALSE, unknown (null) or failed. */
type Truth = boolean | null | Failed;

const intMin = -(2 ** 31);
const intMax = 2 ** 31 - 1;
const longMin = -(2n ** 63n);
const longMax = 2n ** 63n - 1n;

function isJavaNumber(value: Literal): value is JavaNumber {
  return typeof value === 'object' && value !== null;
}

/**
 * ComparisonExpression.__compare with string conversion on (SelectorParser.parse always turns
 * it on): the sign of left − right, or `failed` where Java throws. Incomparable classes give −1,
 * as in Java, so they are "less" and never equal.
 */
function compareJava(left: Present, right: Present): number | Failed {
  if (typeof left === 'string') {
    if (typeof right === 'string') return left < right ? -1 : left > right ? 1 : 0;
    if (typeof right === 'boolean') return compareBooleans(javaBooleanValueOf(left), right);
    const converted = convertString(left, right.type);
    return converted === undefined ? failed : compareNumbers(right.type, converted, right.type, right.value);
  }
  if (typeof left === 'boolean') {
    if (typeof right === 'boolean') return compareBooleans(left, right);
    // RocketMQ's Boolean-versus-String branch casts the Boolean itself to String: it throws.
    return typeof right === 'string' ? failed : -1;
  }
  if (typeof right === 'boolean') return -1;
  if (typeof right === 'string') {
    const converted = convertString(right, left.type);
    return converted === undefined ? failed : compareNumbers(left.type, left.value, left.type, converted);
  }
  return compareNumbers(left.type, left.value, right.type, right.value);
}

/** The `>`-family on two strings: both through Double.valueOf (ComparisonExpression.evaluate). */
function compareStringsAsDoubles(left: string, right: string): number | Failed {
  const leftDouble = parseJavaDouble(left);
  if (leftDouble === undefined) return failed;
  const rightDouble = parseJavaDouble(right);
  return rightDouble === undefined ? failed : compareDoubles(leftDouble, rightDouble);
}

/** Java's widening: any double makes it a double comparison, else any long a long one. */
function compareNumbers(leftType: NumberType, leftValue: number | bigint, rightType: NumberType, rightValue: number | bigint): number {
  if (leftType === 'double' || rightType === 'double') return compareDoubles(Number(leftValue), Number(rightValue));
  if (leftType === 'long' || rightType === 'long') {
    const leftLong = BigInt(leftValue);
    const rightLong = BigInt(rightValue);
    return leftLong < rightLong ? -1 : leftLong > rightLong ? 1 : 0;
  }
  assert(typeof leftValue === 'number' && typeof rightValue === 'number', 'ints are numbers');
  return leftValue < rightValue ? -1 : leftValue > rightValue ? 1 : 0;
}

/** Double.compare: NaN above everything and equal to itself, −0.0 below 0.0. */
function compareDoubles(left: number, right: number): number {
  if (left < right) return -1;
  if (left > right) return 1;
  const leftNaN = Number.isNaN(left);
  const rightNaN = Number.isNaN(right);
  if (leftNaN || rightNaN) return leftNaN === rightNaN ? 0 : leftNaN ? 1 : -1;
  const leftNegativeZero = Object.is(left, -0);
  const rightNegativeZero = Object.is(right, -0);
  return leftNegativeZero === rightNegativeZero ? 0 : leftNegativeZero ? -1 : 1;
}

function compareBooleans(left: boolean, right: boolean): number {
  return left === right ? 0 : left ? 1 : -1;
}

/** Boolean.valueOf(String): "true" in any case; never throws. */
function javaBooleanValueOf(text: string): boolean {
  return text.length === 4 && text.toLowerCase() === 'true';
}

function convertString(text: string, type: NumberType): number | bigint | undefined {
  switch (type) {
    case 'int': return parseJavaInt(text);
    case 'long': return parseJavaLong(text);
    case 'double': return parseJavaDouble(text);
    default: return unreachable(type);
  }
}

/** Short enough to fit an int or a long exactly as a double, so Number()/BigInt() are exact. */
const shortAsciiInteger = /^[+-]?[0-9]{1,9}$/;
const mediumAsciiInteger = /^[+-]?[0-9]{1,18}$/;

/** Integer.valueOf(String): no spaces, optional sign, decimal digits, within 32 bits. */
function parseJavaInt(text: string): number | undefined {
  // `+ 0` turns "-0" into 0: Java ints have no negative zero, and it would compare below 0.0.
  if (shortAsciiInteger.test(text)) return Number(text) + 0;
  const value = parseJavaIntegral(text, BigInt(intMin), BigInt(intMax));
  return value === undefined ? undefined : Number(value);
}

/** Long.valueOf(String): as parseJavaInt, within 64 bits. */
function parseJavaLong(text: string): bigint | undefined {
  if (mediumAsciiInteger.test(text)) return BigInt(text);
  return parseJavaIntegral(text, longMin, longMax);
}

/** Integer.parseInt's loop: any Unicode decimal digit counts (Character.digit), overflow fails. */
function parseJavaIntegral(text: string, min: bigint, max: bigint): bigint | undefined {
  if (text.length === 0) return undefined;
  let index = 0;
  let negative = false;
  const first = text.charCodeAt(0);
  if (first < 0x30) {
    if (first === 0x2d) negative = true;
    else if (first !== 0x2b) return undefined;
    if (text.length === 1) return undefined;
    index = 1;
  }
  const magnitudeMax = negative ? -min : max;
  let magnitude = 0n;
  for (; index < text.length; index++) {
    const digit = javaDecimalDigit(text.charCodeAt(index));
    if (digit < 0) return undefined;
    magnitude = magnitude * 10n + BigInt(digit);
    if (magnitude > magnitudeMax) return undefined;
  }
  return negative ? -magnitude : magnitude;
}

const unicodeDecimalDigit = /^\p{Nd}$/u;

/**
 * Character.digit(char, 10). Unicode keeps every decimal digit set as ten consecutive code
 * points from zero, so a digit's value is its distance from the start of its run, mod 10.
 * Java takes UTF-16 units one at a time, so digits outside the BMP never count.
 */
function javaDecimalDigit(codeUnit: number): number {
  if (codeUnit >= 0x30 && codeUnit <= 0x39) return codeUnit - 0x30;
  if (codeUnit < 0x80 || !unicodeDecimalDigit.test(String.fromCharCode(codeUnit))) return -1;
  let zero = codeUnit;
  while (unicodeDecimalDigit.test(String.fromCharCode(zero - 1))) zero--;
  return (codeUnit - zero) % 10;
}

const javaDecimalFloat = /^[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)$/;
const javaHexFloat = /^([+-]?)0[xX](?:([0-9a-fA-F]+)\.?|([0-9a-fA-F]*)\.([0-9a-fA-F]+))[pP]([+-]?)([0-9]+)[fFdD]?$/;

/** Double.valueOf(String): trims, then Java's decimal or hex float syntax; undefined if neither. */
function parseJavaDouble(text: string): number | undefined {
  const trimmed = javaTrim(text);
  if (javaDecimalFloat.test(trimmed)) {
    // JavaScript's Number() reads the same decimal syntax, correctly rounded as Java is, once
    // the type suffix is gone ("NaN" and "Infinity" never carry one).
    const last = trimmed.charCodeAt(trimmed.length - 1);
    const hasSuffix = last === 0x66 || last === 0x46 || last === 0x64 || last === 0x44;
    return Number(hasSuffix ? trimmed.slice(0, -1) : trimmed);
  }
  const hex = javaHexFloat.exec(trimmed);
  return hex === null ? undefined : hexFloatValue(hex);
}

/** String.trim(): drops UTF-16 units up to U+0020 at both ends. */
function javaTrim(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && text.charCodeAt(start) <= 0x20) start++;
  while (end > start && text.charCodeAt(end - 1) <= 0x20) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** A hex float (`0x1.8p1`), correctly rounded (half to even) as FloatingDecimal.parseHexString. */
function hexFloatValue(match: RegExpExecArray): number {
  const sign = match[1] === '-' ? -1 : 1;
  const integerDigits = match[2] ?? match[3] ?? '';
  const fractionDigits = match[2] === undefined ? match[4] ?? '' : '';
  const significand = BigInt(`0x${integerDigits}${fractionDigits}`);
  if (significand === 0n) return sign * 0;
  const exponentDigits = (match[6] ?? '').replace(/^0+(?=.)/, '');
  const exponentPositive = match[5] !== '-';
  // Java parses the exponent as an int; one that overflows means infinity or zero.
  if (exponentDigits.length > 10 || Number(exponentDigits) > intMax) return sign * (exponentPositive ? Infinity : 0);
  const exponent = (exponentPositive ? 1 : -1) * Number(exponentDigits) - 4 * fractionDigits.length;
  return sign * roundToDouble(significand, exponent);
}

/** significand × 2^exponent (significand > 0) rounded half to even, subnormals included. */
function roundToDouble(significand: bigint, exponent: number): number {
  const bitLength = significand.toString(2).length;
  const leadingExponent = bitLength - 1 + exponent;
  if (leadingExponent > 1023) return Infinity;
  // The lowest bit a double keeps: 52 below the leading bit, or 2^-1074 for subnormals.
  const lowestExponent = Math.max(leadingExponent - 52, -1074);
  const dropped = lowestExponent - exponent;
  if (dropped <= 0) return scaleByPowerOfTwo(Number(significand), exponent);
  const shift = BigInt(dropped);
  let kept = significand >> shift;
  const remainder = significand - (kept << shift);
  const half = 1n << (shift - 1n);
  if (remainder > half || (remainder === half && (kept & 1n) === 1n)) kept += 1n;
  return scaleByPowerOfTwo(Number(kept), lowestExponent);
}

/** x × 2^exponent for an integer x below 2^54 whose product is representable (or overflows). */
function scaleByPowerOfTwo(x: number, exponent: number): number {
  assert(exponent >= -1074 && exponent <= 1023, 'exponent within the double range');
  // 2^exponent itself would be subnormal below -1022; two normal factors keep each step exact.
  return exponent < -1022 ? x * 2 ** -1022 * 2 ** (exponent + 1022) : x * 2 ** exponent;
}

function negateNumber(value: JavaNumber): JavaNumber {
  switch (value.type) {
    // `0 - v`, not `-v`: an int has no negative zero. Overflow cannot happen: literals are at
    // most 2^31−1 (Integer) or 2^63−1 (Long), so their negations fit.
    case 'int': return { type: 'int', value: 0 - value.value };
    case 'long': return { type: 'long', value: -value.value };
    case 'double': return { type: 'double', value: -value.value };
    default: return unreachable(value);
  }
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

const keywords = ['NOT', 'AND', 'OR', 'BETWEEN', 'IN', 'TRUE', 'FALSE', 'NULL', 'IS', 'CONTAINS', 'STARTSWITH', 'ENDSWITH'] as const;
type Keyword = (typeof keywords)[number];
const keywordByUpperCase: ReadonlyMap<string, Keyword> = new Map(keywords.map((keyword) => [keyword, keyword]));
type Punctuator = '=' | '<>' | '>' | '>=' | '<' | '<=' | '(' | ')' | ',' | '+' | '-';
type TokenKind = Keyword | Punctuator | 'identifier' | 'string' | 'integer' | 'float' | 'end';

interface Token {
  readonly kind: TokenKind;
  /** 0-based start in the expression. */
  readonly offset: number;
  /** The source text of the token. */
  readonly image: string;
  /** A string literal's value with `''` decoded; otherwise the image. */
  readonly text: string;
}

const identifierPattern = /[A-Za-z_$][A-Za-z0-9_$]*/y;
// JavaCC takes the longest match; a decimal literal is never longer than a float here.
const floatPattern = /[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+/y;
const integerPattern = /0|[1-9][0-9]*[lL]?/y;
// RocketMQ's line comment must end in a line break; at the end of input `--` is two minuses.
const lineCommentPattern = /--[^\n\r]*[\n\r]/y;
const punctuators: readonly Punctuator[] = ['<>', '<=', '>=', '=', '>', '<', '(', ')', ',', '+', '-'];

type Fail = (offset: number, expected: string, found: string) => never;

/** Tokens on demand, so the first error in reading order is the one reported (as JavaCC). */
class Lexer {
  private offset = 0;
  private readonly ahead: Token[] = [];

  constructor(private readonly source: string, private readonly fail: Fail) {}

  peek(distance = 0): Token {
    assert(distance <= 1, 'the grammar needs two tokens of lookahead at most');
    while (this.ahead.length <= distance) this.ahead.push(this.scan());
    const token = this.ahead[distance];
    assert(token !== undefined, 'lookahead filled');
    return token;
  }

  next(): Token {
    const token = this.peek();
    this.ahead.shift();
    return token;
  }

  private scan(): Token {
    this.skipBlanksAndComments();
    const start = this.offset;
    const source = this.source;
    if (start >= source.length) return { kind: 'end', offset: start, image: '', text: '' };
    const char = source.charAt(start);
    const token = char === "'" ? this.scanString(start)
      : isDigit(char) || (char === '.' && isDigit(source.charAt(start + 1))) ? this.scanNumber(start)
      : this.scanWord(start) ?? this.scanPunctuator(start);
    assert(this.offset > start, 'every token consumes input');
    return token;
  }

  private skipBlanksAndComments(): void {
    const source = this.source;
    for (;;) {
      const char = source.charAt(this.offset);
      if (char === ' ' || char === '\t' || char === '\n' || char === '\r' || char === '\f') {
        this.offset++;
      } else if (source.startsWith('/*', this.offset)) {
        const close = source.indexOf('*/', this.offset + 2);
        if (close < 0) this.fail(this.offset, "'*/' to close the comment that starts here", 'end of input');
        this.offset = close + 2;
      } else if (this.matchAt(lineCommentPattern) !== undefined) {
        // matchAt moved past the comment.
      } else {
        return;
      }
    }
  }

  private scanString(start: number): Token {
    const source = this.source;
    let text = '';
    let from = start + 1;
    for (;;) {
      const quote = source.indexOf("'", from);
      if (quote < 0) this.fail(start, "a closing quote for the string that starts here", 'end of input');
      text += source.slice(from, quote);
      if (source.charAt(quote + 1) !== "'") {
        this.offset = quote + 1;
        return { kind: 'string', offset: start, image: source.slice(start, this.offset), text };
      }
      text += "'";
      from = quote + 2;
    }
  }

  private scanNumber(start: number): Token {
    const float = this.matchAt(floatPattern);
    if (float !== undefined) return { kind: 'float', offset: start, image: float, text: float };
    const integer = this.matchAt(integerPattern);
    assert(integer !== undefined, 'a digit starts an integer');
    return { kind: 'integer', offset: start, image: integer, text: integer };
  }

  private scanWord(start: number): Token | undefined {
    const word = this.matchAt(identifierPattern);
    if (word === undefined) return undefined;
    const keyword = word.length <= 10 ? keywordByUpperCase.get(word.toUpperCase()) : undefined;
    return { kind: keyword ?? 'identifier', offset: start, image: word, text: word };
  }

  private scanPunctuator(start: number): Token {
    const punctuator = punctuators.find((candidate) => this.source.startsWith(candidate, start));
    if (punctuator === undefined) this.fail(start, 'a property, literal, operator or parenthesis', describeCharacter(this.source, start));
    this.offset = start + punctuator.length;
    return { kind: punctuator, offset: start, image: punctuator, text: punctuator };
  }

  /** The match of a sticky pattern at the current offset, moving past it. */
  private matchAt(pattern: RegExp): string | undefined {
    assert(pattern.sticky, 'lexer patterns are sticky');
    pattern.lastIndex = this.offset;
    const match = pattern.exec(this.source);
    if (match === null) return undefined;
    this.offset = pattern.lastIndex;
    return match[0];
  }
}

function isDigit(char: string): boolean {
  return char >= '0' && char <= '9';
}

function describeCharacter(source: string, offset: number): string {
  const codePoint = source.codePointAt(offset) ?? 0;
  const shown = codePoint < 0x20 || codePoint === 0x7f ? `U+${codePoint.toString(16).toUpperCase().padStart(4, '0')}` : `'${String.fromCodePoint(codePoint)}'`;
  const hint = source.startsWith('!=', offset) ? " (write '<>' for not-equal)"
    : source.charAt(offset) === '"' ? ' (strings take single quotes)'
    : source.startsWith('&&', offset) || source.startsWith('||', offset) ? ' (write AND, OR)'
    : '';
  return `character ${shown}${hint}`;
}

// ---------------------------------------------------------------------------------------------
// Parser: SelectorParser.jj's grammar with RocketMQ's compile-time checks
// ---------------------------------------------------------------------------------------------

type RelationalOperator = '>' | '>=' | '<' | '<=';
type TextOperator = 'CONTAINS' | 'STARTSWITH' | 'ENDSWITH';

/** Parentheses and `+` leave no node, as in RocketMQ, whose checks look at node classes. */
type Expr =
  | { readonly kind: 'property'; readonly offset: number; readonly name: string }
  | { readonly kind: 'literal'; readonly offset: number; readonly value: Literal; readonly image: string }
  | { readonly kind: 'negate'; readonly offset: number; readonly operand: Expr }
  /** A property used as a condition (UnaryExpression.createBooleanCast). */
  | { readonly kind: 'cast'; readonly offset: number; readonly name: string }
  | { readonly kind: 'not'; readonly offset: number; readonly operand: Expr }
  | { readonly kind: 'and' | 'or'; readonly offset: number; readonly left: Expr; readonly right: Expr }
  /** `=`, and `IS NULL` as an equality with the NULL literal (which `=` itself refuses). */
  | { readonly kind: 'equal'; readonly offset: number; readonly left: Expr; readonly right: Expr }
  | { readonly kind: 'relational'; readonly offset: number; readonly operator: RelationalOperator; readonly left: Expr; readonly right: Expr }
  | { readonly kind: 'in'; readonly offset: number; readonly name: string; readonly values: ReadonlySet<string>; readonly negated: boolean }
  | { readonly kind: 'text'; readonly offset: number; readonly operator: TextOperator; readonly negated: boolean; readonly operand: Expr; readonly search: string };

/** RocketMQ's BooleanExpression: what AND, OR, NOT and the whole expression accept. */
function isCondition(expr: Expr): boolean {
  switch (expr.kind) {
    case 'property': case 'negate': return false;
    case 'literal': return typeof expr.value === 'boolean' || expr.value === null;
    case 'cast': case 'not': case 'and': case 'or': case 'equal': case 'relational': case 'in': case 'text': return true;
    default: return unreachable(expr);
  }
}

function describeExpr(expr: Expr): string {
  switch (expr.kind) {
    case 'property': return `property ${expr.name}`;
    case 'literal': return typeof expr.value === 'string' ? `string ${clip(expr.image)}` : isJavaNumber(expr.value) ? `number ${clip(expr.image)}` : expr.image.toUpperCase();
    case 'negate': return 'a negated value';
    case 'cast': case 'not': case 'and': case 'or': case 'equal': case 'relational': case 'in': case 'text': return 'a condition';
    default: return unreachable(expr);
  }
}

function describeToken(token: Token): string {
  const kind = token.kind;
  if (kind === 'end') return 'end of input';
  if (kind === 'identifier') return `property ${clip(token.image)}`;
  if (kind === 'string') return `string ${clip(token.image)}`;
  if (kind === 'integer' || kind === 'float') return `number ${clip(token.image)}`;
  return keywordByUpperCase.has(kind) ? kind : `'${kind}'`;
}

const tokenImageShownMax = 40;

function clip(image: string): string {
  return image.length <= tokenImageShownMax ? image : `${image.slice(0, tokenImageShownMax)}…`;
}

const excerptLengthMax = 120;

function quoteExcerpt(expression: string, column: number): string {
  if (expression.length <= excerptLengthMax) return JSON.stringify(expression);
  const start = Math.max(0, Math.min(column - 1 - excerptLengthMax / 2, expression.length - excerptLengthMax));
  const end = start + excerptLengthMax;
  return `${start > 0 ? '…' : ''}${JSON.stringify(expression.slice(start, end))}${end < expression.length ? '…' : ''}`;
}

class Parser {
  /** Every identifier read, in order of first appearance. */
  readonly propertyNames = new Set<string>();
  private readonly lexer: Lexer;
  private depth = 0;

  constructor(private readonly source: string) {
    this.lexer = new Lexer(source, (offset, expected, found) => this.fail(offset, expected, found));
  }

  /** JmsSelector, plus the end of input RocketMQ does not demand (see the file comment). */
  parseSelector(): Expr {
    const expression = this.orExpression();
    const trailing = this.lexer.peek();
    if (trailing.kind !== 'end') {
      const hint = this.source.startsWith('--', trailing.offset) ? ' (a -- comment needs a line break after it)' : '';
      this.fail(trailing.offset, 'an operator or the end of the expression', `${describeToken(trailing)}${hint}`);
    }
    assert(this.depth === 0, 'nesting unwound');
    return this.asCondition(expression);
  }

  private fail(offset: number, expected: string, found: string): never {
    throw new SqlFilterError(this.source, offset + 1, `expected ${expected}, found ${found}`);
  }

  private orExpression(): Expr {
    let left = this.andExpression();
    while (this.lexer.peek().kind === 'OR') {
      this.lexer.next();
      const right = this.andExpression();
      left = { kind: 'or', offset: left.offset, left: this.asCondition(left), right: this.asCondition(right) };
    }
    return left;
  }

  private andExpression(): Expr {
    let left = this.equalityExpression();
    while (this.lexer.peek().kind === 'AND') {
      this.lexer.next();
      const right = this.equalityExpression();
      left = { kind: 'and', offset: left.offset, left: this.asCondition(left), right: this.asCondition(right) };
    }
    return left;
  }

  private equalityExpression(): Expr {
    let left = this.comparisonExpression();
    for (;;) {
      const operator = this.lexer.peek();
      if (operator.kind === '=' || operator.kind === '<>') {
        this.lexer.next();
        const equal = this.createEqual(left, this.comparisonExpression(), operator.kind);
        left = operator.kind === '=' ? equal : { kind: 'not', offset: left.offset, operand: equal };
      } else if (operator.kind === 'IS') {
        this.lexer.next();
        const negated = this.lexer.peek().kind === 'NOT';
        if (negated) this.lexer.next();
        this.expect('NULL', negated ? 'NULL after IS NOT' : 'NULL or NOT NULL after IS');
        const isNull: Expr = { kind: 'equal', offset: left.offset, left, right: { kind: 'literal', offset: operator.offset, value: null, image: 'NULL' } };
        left = negated ? { kind: 'not', offset: left.offset, operand: isNull } : isNull;
      } else {
        return left;
      }
    }
  }

  private comparisonExpression(): Expr {
    let left = this.unaryExpression();
    for (;;) {
      const operator = this.lexer.peek();
      let negated = false;
      let kind = operator.kind;
      if (kind === 'NOT') {
        // `NOT` here only as the first half of NOT BETWEEN, NOT IN, NOT CONTAINS, … (LOOKAHEAD(2)).
        const after = this.lexer.peek(1).kind;
        if (after !== 'BETWEEN' && after !== 'IN' && after !== 'CONTAINS' && after !== 'STARTSWITH' && after !== 'ENDSWITH') return left;
        this.lexer.next();
        negated = true;
        kind = after;
      }
      if (kind === '>' || kind === '>=' || kind === '<' || kind === '<=') {
        this.lexer.next();
        left = this.createRelational(kind, left, this.unaryExpression(), kind);
      } else if (kind === 'CONTAINS' || kind === 'STARTSWITH' || kind === 'ENDSWITH') {
        this.lexer.next();
        const search = this.expectString(`a string literal after ${negated ? 'NOT ' : ''}${kind}`);
        left = { kind: 'text', offset: left.offset, operator: kind, negated, operand: left, search };
      } else if (kind === 'BETWEEN') {
        this.lexer.next();
        left = this.between(left, negated);
      } else if (kind === 'IN') {
        this.lexer.next();
        left = this.inList(left, negated);
      } else {
        return left;
      }
    }
  }

  /** BETWEEN is `>= low AND <= high`; NOT BETWEEN is `< low OR > high` (createBetween/createNotBetween). */
  private between(value: Expr, negated: boolean): Expr {
    const operator = negated ? 'NOT BETWEEN' : 'BETWEEN';
    const low = this.unaryExpression();
    this.expect('AND', `AND between the bounds of ${operator}`);
    const high = this.unaryExpression();
    if (!negated) this.checkBetweenBounds(low, high);
    const offset = value.offset;
    if (!negated) {
      return { kind: 'and', offset, left: this.createRelational('>=', value, low, operator), right: this.createRelational('<=', value, high, operator) };
    }
    return { kind: 'or', offset, left: this.createRelational('<', value, low, operator), right: this.createRelational('>', value, high, operator) };
  }

  /** Only literal bounds are checked, so `BETWEEN -1 AND -5` (negations) compiles and never matches. */
  private checkBetweenBounds(low: Expr, high: Expr): void {
    if (low.kind !== 'literal' || high.kind !== 'literal') return;
    for (const bound of [low, high]) if (bound.value === null) this.fail(bound.offset, 'a number as a BETWEEN bound', 'NULL');
    if (!isJavaNumber(low.value) || !isJavaNumber(high.value)) return; // createRelational refuses these
    if (compareJava(high.value, low.value) === -1) this.fail(low.offset, `a lower bound not above the upper bound ${high.image}`, `number ${low.image}`);
  }

  private inList(left: Expr, negated: boolean): Expr {
    const operator = negated ? 'NOT IN' : 'IN';
    this.expect('(', `'(' after ${operator}`);
    const values = new Set<string>([this.expectString(`a string literal in ${operator} (…)`)]);
    while (this.lexer.peek().kind === ',') {
      this.lexer.next();
      values.add(this.expectString(`a string literal after ','`));
    }
    this.expect(')', `',' or ')' in ${operator} (…)`);
    if (left.kind !== 'property') this.fail(left.offset, `a property before ${operator}`, describeExpr(left));
    return { kind: 'in', offset: left.offset, name: left.name, values, negated };
  }

  private unaryExpression(): Expr {
    const operator = this.lexer.peek();
    if (operator.kind !== '+' && operator.kind !== '-' && operator.kind !== 'NOT') return this.primaryExpression();
    this.lexer.next();
    this.enterNesting(operator);
    const operand = this.unaryExpression();
    this.depth--;
    if (operator.kind === '+') return operand;
    if (operator.kind === '-') return { kind: 'negate', offset: operator.offset, operand };
    return { kind: 'not', offset: operator.offset, operand: this.asCondition(operand) };
  }

  private primaryExpression(): Expr {
    const token = this.lexer.next();
    const offset = token.offset;
    const image = token.image;
    const kind = token.kind;
    if (kind === 'string') return { kind: 'literal', offset, value: token.text, image };
    if (kind === 'integer') return { kind: 'literal', offset, value: this.integerValue(token), image };
    if (kind === 'float') return { kind: 'literal', offset, value: this.floatValue(token), image };
    if (kind === 'TRUE' || kind === 'FALSE') return { kind: 'literal', offset, value: kind === 'TRUE', image };
    if (kind === 'NULL') return { kind: 'literal', offset, value: null, image };
    if (kind === 'identifier') {
      this.propertyNames.add(token.text);
      return { kind: 'property', offset, name: token.text };
    }
    if (kind !== '(') return this.fail(offset, 'a value', describeToken(token));
    this.enterNesting(token);
    const inner = this.orExpression();
    this.expect(')', "')'");
    this.depth--;
    return inner;
  }

  /** ConstantExpression.createFromDecimal: an Integer when it fits, else a Long; `L` only decorates. */
  private integerValue(token: Token): JavaNumber {
    const digits = token.image.replace(/[lL]$/, '');
    const value = BigInt(digits);
    if (value > longMax) this.fail(token.offset, `an integer up to ${longMax}`, `number ${clip(token.image)}`);
    return value <= BigInt(intMax) ? { type: 'int', value: Number(value) } : { type: 'long', value };
  }

  /** ConstantExpression.createFloat: a Double, refused when infinite or below Double.MIN_VALUE (so zero). */
  private floatValue(token: Token): JavaNumber {
    const value = Number(token.image);
    if (!Number.isFinite(value)) this.fail(token.offset, 'a decimal number up to 1.7976931348623157E308', `number ${clip(token.image)}`);
    if (value === 0) this.fail(token.offset, "a non-zero decimal number (RocketMQ refuses decimal zero; write 0)", `number ${clip(token.image)}`);
    return { type: 'double', value };
  }

  private enterNesting(token: Token): void {
    this.depth++;
    if (this.depth > sqlNestingDepthMax) {
      this.fail(token.offset, `at most ${sqlNestingDepthMax} levels of parentheses and prefix operators (NOT, -, +)`, `${describeToken(token)} at level ${this.depth}`);
    }
  }

  private expect(kind: TokenKind, expected: string): Token {
    const token = this.lexer.next();
    if (token.kind !== kind) this.fail(token.offset, expected, describeToken(token));
    return token;
  }

  private expectString(expected: string): string {
    return this.expect('string', expected).text;
  }

  /** SelectorParser.asBooleanExpression: conditions pass, a bare property becomes a cast. */
  private asCondition(expr: Expr): Expr {
    if (isCondition(expr)) return expr;
    if (expr.kind === 'property') return { kind: 'cast', offset: expr.offset, name: expr.name };
    return this.fail(expr.offset, 'a condition (a comparison, TRUE, FALSE or a property)', describeExpr(expr));
  }

  /** createEqual's checks: no NULL operand, no `TRUE = 'x'` between literals. */
  private createEqual(left: Expr, right: Expr, operator: '=' | '<>'): Expr {
    for (const operand of [left, right]) {
      if (operand.kind === 'literal' && operand.value === null) this.fail(operand.offset, `a value other than NULL beside '${operator}' (test with IS NULL or IS NOT NULL)`, 'NULL');
    }
    if (left.kind === 'literal' && typeof left.value === 'boolean' && right.kind === 'literal' && typeof right.value !== 'boolean') {
      this.fail(right.offset, `TRUE or FALSE to compare with ${left.image.toUpperCase()}`, describeExpr(right));
    }
    return { kind: 'equal', offset: left.offset, left, right };
  }

  /** checkLessThanOperand on both sides: properties, number literals and negations only. */
  private createRelational(operator: RelationalOperator, left: Expr, right: Expr, written: string): Expr {
    for (const operand of [left, right]) {
      const refused = operand.kind === 'literal' ? !isJavaNumber(operand.value) : isCondition(operand);
      if (refused) this.fail(operand.offset, `a number or a property as an operand of ${written}`, describeExpr(operand));
    }
    return { kind: 'relational', offset: left.offset, operator, left, right };
  }
}

// ---------------------------------------------------------------------------------------------
// Compiler: the checked tree into closures (RocketMQ's evaluate() methods, one per node kind)
// ---------------------------------------------------------------------------------------------

type Evaluate = (lookup: PropertyLookup) => Value;
type Decide = (lookup: PropertyLookup) => Truth;

function compileValue(expr: Expr): Evaluate {
  switch (expr.kind) {
    case 'property': {
      const name = expr.name;
      return (lookup) => lookup(name) ?? null;
    }
    case 'literal': {
      const value = expr.value;
      return () => value;
    }
    case 'negate': return compileNegate(expr);
    case 'cast': case 'not': case 'and': case 'or': case 'equal': case 'relational': case 'in': case 'text':
      return compileCondition(expr);
    default: return unreachable(expr);
  }
}

function compileCondition(expr: Expr): Decide {
  switch (expr.kind) {
    case 'property': case 'negate':
      throw new InvariantViolation(`compileCondition: a ${expr.kind} is not a condition (the parser casts or refuses it)`);
    case 'literal': {
      const value = expr.value;
      assert(typeof value === 'boolean' || value === null, 'a literal condition is TRUE, FALSE or NULL');
      return () => value;
    }
    case 'cast': {
      // A present property is a String, never a Boolean: FALSE (createBooleanCast).
      const name = expr.name;
      return (lookup) => (lookup(name) === undefined ? null : false);
    }
    case 'not': {
      const operand = compileCondition(expr.operand);
      return (lookup) => {
        const truth = operand(lookup);
        return typeof truth === 'boolean' ? !truth : truth;
      };
    }
    case 'and': return compileAnd(compileCondition(expr.left), compileCondition(expr.right));
    case 'or': return compileOr(compileCondition(expr.left), compileCondition(expr.right));
    case 'equal': return compileEqual(expr.left, expr.right);
    case 'relational': return compileRelational(expr.operator, compileValue(expr.left), compileValue(expr.right));
    case 'in': {
      // UnaryExpression.createInExpression: unknown when missing, so NOT IN is unknown too.
      const { name, values, negated } = expr;
      return (lookup) => {
        const value = lookup(name);
        return value === undefined ? null : values.has(value) !== negated;
      };
    }
    case 'text': return compileText(expr.operator, expr.negated, compileValue(expr.operand), expr.search);
    default: return unreachable(expr);
  }
}

/** Left to right, stopping at the first FALSE as Java's && does (a later failure is skipped). */
function compileAnd(left: Decide, right: Decide): Decide {
  return (lookup) => {
    const leftTruth = left(lookup);
    if (leftTruth === false || leftTruth === failed) return leftTruth;
    const rightTruth = right(lookup);
    if (rightTruth === false || rightTruth === failed) return rightTruth;
    return leftTruth === null || rightTruth === null ? null : true;
  };
}

function compileOr(left: Decide, right: Decide): Decide {
  return (lookup) => {
    const leftTruth = left(lookup);
    if (leftTruth === true || leftTruth === failed) return leftTruth;
    const rightTruth = right(lookup);
    if (rightTruth === true || rightTruth === failed) return rightTruth;
    return leftTruth === null || rightTruth === null ? null : false;
  };
}

/**
 * doCreateEqual: both sides are evaluated; a missing left is unknown, a missing right alone is
 * FALSE, both missing is TRUE; otherwise Java equality after conversion.
 */
function compileEqual(leftExpr: Expr, rightExpr: Expr): Decide {
  if (leftExpr.kind === 'property' && rightExpr.kind === 'literal' && typeof rightExpr.value === 'string') {
    // The common `TAGS = 'x'`: string against string needs no conversion.
    const name = leftExpr.name;
    const text = rightExpr.value;
    return (lookup) => {
      const value = lookup(name);
      return value === undefined ? null : value === text;
    };
  }
  const left = compileValue(leftExpr);
  const right = compileValue(rightExpr);
  return (lookup) => {
    const leftValue = left(lookup);
    if (leftValue === failed) return failed;
    const rightValue = right(lookup);
    if (rightValue === failed) return failed;
    if (leftValue === null) return rightValue === null ? true : null;
    if (rightValue === null) return false;
    const order = compareJava(leftValue, rightValue);
    return order === failed ? failed : order === 0;
  };
}

/** ComparisonExpression.evaluate: a missing left is unknown before the right is looked at. */
function compileRelational(operator: RelationalOperator, left: Evaluate, right: Evaluate): Decide {
  const accepts = orderTest(operator);
  return (lookup) => {
    const leftValue = left(lookup);
    if (leftValue === null || leftValue === failed) return leftValue;
    const rightValue = right(lookup);
    if (rightValue === null || rightValue === failed) return rightValue;
    const order = typeof leftValue === 'string' && typeof rightValue === 'string'
      ? compareStringsAsDoubles(leftValue, rightValue)
      : compareJava(leftValue, rightValue);
    return order === failed ? failed : accepts(order);
  };
}

function orderTest(operator: RelationalOperator): (order: number) => boolean {
  switch (operator) {
    case '>': return (order) => order > 0;
    case '>=': return (order) => order >= 0;
    case '<': return (order) => order < 0;
    case '<=': return (order) => order <= 0;
    default: return unreachable(operator);
  }
}

/** ContainsExpression and friends: FALSE for an empty search, a missing or a non-string value. */
function compileText(operator: TextOperator, negated: boolean, operand: Evaluate, search: string): Decide {
  // The empty-search check comes before the operand is evaluated, so nothing in it can fail.
  if (search === '') return () => false;
  const test = textTest(operator, search);
  return (lookup) => {
    const value = operand(lookup);
    if (value === failed) return failed;
    return typeof value === 'string' && test(value) !== negated;
  };
}

function textTest(operator: TextOperator, search: string): (value: string) => boolean {
  switch (operator) {
    case 'CONTAINS': return (value) => value.includes(search);
    case 'STARTSWITH': return (value) => value.startsWith(search);
    case 'ENDSWITH': return (value) => value.endsWith(search);
    default: return unreachable(operator);
  }
}

/**
 * UnaryExpression.createNegate: a Number is negated, anything else (a property's String, a
 * Boolean, NULL) becomes null. Only a condition inside can fail, so everything else folds now.
 */
function compileNegate(expr: Extract<Expr, { kind: 'negate' }>): Evaluate {
  const folded = foldNegation(expr);
  if (folded !== undefined) return () => folded;
  const operand = compileValue(expr.operand);
  return (lookup) => (operand(lookup) === failed ? failed : null);
}

/** The negation's value when it cannot depend on the message; undefined when it might fail. */
function foldNegation(expr: Extract<Expr, { kind: 'negate' }>): Literal | undefined {
  const operand = expr.operand;
  switch (operand.kind) {
    case 'literal': return isJavaNumber(operand.value) ? negateNumber(operand.value) : null;
    case 'property': return null;
    case 'negate': {
      const inner = foldNegation(operand);
      if (inner === undefined) return undefined;
      return isJavaNumber(inner) ? negateNumber(inner) : null;
    }
    case 'cast': case 'not': case 'and': case 'or': case 'equal': case 'relational': case 'in': case 'text': return undefined;
    default: return unreachable(operand);
  }
}
