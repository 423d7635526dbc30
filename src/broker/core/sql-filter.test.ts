/**
 * The SQL92 filter (F11) against RocketMQ's behaviour. Table tests pin each operator, the
 * precedence, literal forms, conversions and missing-property rules, citing the RocketMQ file a
 * surprising case comes from (apache/rocketmq `filter/src/main/java/org/apache/rocketmq/filter/`,
 * abbreviated `filter/`). Error tests pin columns. Then fast-check: random well-formed
 * expression trees, printed to text, must compile, and the compiled filter must agree with a
 * deliberately plain reference evaluator below that walks the tree the way RocketMQ's Java
 * classes do (boxed values, exceptions for Java's throws). A mutated reference shows that the
 * property can fail.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from '../../util/assert.js';
import { FilterError } from './filter.js';
import { compileSqlFilter, referencedProperties, type SqlFilter, SqlFilterError, sqlExpressionLengthMax, sqlNestingDepthMax } from './sql-filter.js';

type Properties = Readonly<Record<string, string>>;

const lookupOf = (properties: Properties) => (name: string): string | undefined => (Object.hasOwn(properties, name) ? properties[name] : undefined);
const matches = (expression: string, properties: Properties = {}): boolean => compileSqlFilter(expression).matches(lookupOf(properties));

function compileError(expression: string): SqlFilterError {
  try {
    compileSqlFilter(expression);
  } catch (error) {
    if (error instanceof SqlFilterError) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(expression)} not to compile`);
}

/** [expression, properties, delivered, why (for the surprising ones)] */
type Row = readonly [string, Properties, boolean, string?];

function table(name: string, rows: readonly Row[]): void {
  describe(name, () => {
    const cases = rows.map(([expression, properties, delivered]) => ({ expression, properties, delivered, shown: JSON.stringify(properties) }));
    it.each(cases)('$expression with $shown → $delivered', ({ expression, properties, delivered }) => {
      expect(matches(expression, properties)).toBe(delivered);
    });
  });
}

describe('compileSqlFilter: RocketMQ semantics', () => {
  table('numeric comparison', [
    ['a > 5', { a: '10' }, true],
    ['a > 5', { a: '5' }, false],
    ['a >= 5', { a: '5' }, true],
    ['a < 5', { a: '4' }, true],
    ['a < 5', { a: '5' }, false],
    ['a <= 5', { a: '5' }, true],
    ['a <= 5', { a: '6' }, false],
    ['a = 5', { a: '5' }, true],
    ['a <> 5', { a: '5' }, false],
    ['a <> 5', { a: '6' }, true],
    ['5 < a', { a: '6' }, true],
    ['a > b', { a: '10', b: '9' }, true, 'two properties under > both go through Double.valueOf: numeric, not lexicographic (ComparisonExpression.evaluate)'],
    ['a > b', { a: '10', b: '20' }, false],
    ['a < b', { a: '-0.0', b: '0.0' }, true, 'Double.compare puts -0.0 below 0.0'],
    ['a > 1.0', { a: 'NaN' }, true, 'Double.valueOf accepts NaN and Double.compare puts it above everything'],
    ['a < 1.0', { a: '-Infinity' }, true],
    ['a > b', { a: 'x', b: '1' }, false, 'a non-numeric string under > throws, so nothing is delivered'],
    ['3 = 3.0', {}, true, 'Integer against Double widens to double (ComparisonExpression.__compare)'],
    ['2147483648 > 2147483647', {}, true],
    ['1 < 1.5', {}, true],
  ]);

  table('strings, IN', [
    ["a = 'abc'", { a: 'abc' }, true],
    ["a = 'abc'", { a: 'ABC' }, false],
    ["a <> 'abc'", { a: 'abd' }, true],
    ["'abc' = 'abc'", {}, true],
    ["a = b", { a: '10', b: '10.0' }, false, '= on two strings compares the strings'],
    ["a IN ('x', 'y')", { a: 'y' }, true],
    ["a IN ('x', 'y')", { a: 'z' }, false],
    ["a IN ('1', '2', '3', '4', '5', '6')", { a: '6' }, true],
    ["a NOT IN ('x', 'y')", { a: 'z' }, true],
    ["a NOT IN ('x')", { a: 'x' }, false],
    ["(a) IN ('x')", { a: 'x' }, true, 'parentheses leave no node, so (a) is still a property for IN'],
  ]);

  table('BETWEEN (inclusive), NOT BETWEEN', [
    ['a BETWEEN 2 AND 10', { a: '2' }, true],
    ['a BETWEEN 2 AND 10', { a: '10' }, true],
    ['a BETWEEN 2 AND 10', { a: '1' }, false],
    ['a BETWEEN 2 AND 10', { a: '11' }, false],
    ['a BETWEEN 2 AND 2', { a: '2' }, true],
    ['a BETWEEN 1.5 AND 2.5', { a: '2.5' }, true],
    ['a BETWEEN -5 AND -1', { a: '-3' }, true],
    ['a BETWEEN -1 AND -5', { a: '-3' }, false, 'negated bounds are not constants, so their order is not checked (ComparisonExpression.createBetween)'],
    ['a NOT BETWEEN 2 AND 10', { a: '1' }, true],
    ['a NOT BETWEEN 2 AND 10', { a: '11' }, true],
    ['a NOT BETWEEN 2 AND 10', { a: '2' }, false],
    ['a NOT BETWEEN 10 AND 2', { a: '5' }, true, 'NOT BETWEEN is < low OR > high, with no bound check'],
    ['a BETWEEN 1 AND 3 AND b = 1', { a: '2', b: '1' }, true, 'the first AND belongs to BETWEEN'],
  ]);

  table('IS [NOT] NULL', [
    ['a IS NULL', {}, true],
    ['a IS NULL', { a: '' }, false],
    ['a IS NOT NULL', { a: '' }, true],
    ['a IS NOT NULL', {}, false],
    ['NULL IS NULL', {}, true],
    ['5 IS NULL', {}, false],
    ['(a > 1) IS NULL', {}, true, 'a comparison with a missing property is unknown, which IS NULL sees'],
    ["a IS NULL OR a = 'hello'", {}, true, 'filter/ExpressionTest testEvaluate_nullOr'],
    ["a IS NULL OR a = 'hello'", { a: 'abc' }, false],
  ]);

  table('CONTAINS, STARTSWITH, ENDSWITH', [
    ["a CONTAINS 'x'", { a: 'axb' }, true],
    ["a STARTSWITH 'ax'", { a: 'axb' }, true],
    ["a ENDSWITH 'xb'", { a: 'axb' }, true],
    ["a CONTAINS 'u'", { a: 'axb' }, false],
    ["a NOT CONTAINS 'x'", { a: 'axb' }, false],
    ["a NOT STARTSWITH 'u'", { a: 'axb' }, true],
    ["a NOT ENDSWITH 'u'", { a: 'axb' }, true],
    ["a CONTAINS ''", { a: 'axb' }, false, 'an empty search is FALSE (ComparisonExpression.ContainsExpression)'],
    ["a NOT CONTAINS ''", { a: 'axb' }, false, 'also for the NOT forms'],
    ["a NOT CONTAINS 'x'", {}, false, 'a missing property is FALSE here, not unknown'],
    ["NOT (a NOT CONTAINS 'x')", {}, true, 'so NOT of it delivers'],
    ["'axb' CONTAINS 'x'", {}, true],
    ["5 CONTAINS '5'", {}, false, 'a number is not a String'],
    ["a CONTAINS 'x' CONTAINS 'y'", { a: 'x' }, false, 'a Boolean is not a String either'],
  ]);

  table('AND, OR, NOT with unknown (three-valued, filter/LogicExpression.java)', [
    ["a = '1' OR b = '1'", { b: '1' }, true],
    ["a = '1' AND b = '1'", { b: '1' }, false],
    ["a = '1' AND b = '1'", { a: '1', b: '1' }, true],
    ["NOT (a = '1')", {}, false],
    ["NOT (a = '1')", { a: '2' }, true],
    ["NOT (a = '1' AND b = '2')", { b: '3' }, true, 'unknown AND FALSE is FALSE'],
    ["NOT (a = '1' OR b = '2')", { b: '3' }, false, 'unknown OR FALSE is unknown'],
    ['TRUE', {}, true],
    ['FALSE', {}, false],
    ['NULL', {}, false],
    ['NOT NULL', {}, false],
    ['NOT FALSE', {}, true],
    ['TRUE AND NOT FALSE OR NULL', {}, true],
  ]);

  table('precedence (filter/parser/SelectorParser.jj)', [
    ["a = '1' OR b = '1' AND c = '1'", { a: '1' }, true],
    ["a = '1' OR b = '1' AND c = '1'", { b: '1' }, false],
    ["(a = '1' OR b = '1') AND c = '1'", { a: '1' }, false],
    ['NOT a = TRUE', { a: 'true' }, true, 'NOT binds tighter than =: (NOT a) = TRUE, and NOT of a present property is TRUE'],
    ['NOT (a = TRUE)', { a: 'true' }, false],
    ['a = b > 1', { a: 'true', b: '2' }, true, 'comparison binds tighter than =: a = (b > 1)'],
    ['a > 1 = TRUE', { a: '2' }, true],
    ["a IN ('x') = FALSE", { a: 'y' }, true],
    ['a > -5', { a: '-4' }, true],
    ['a > - -5', { a: '6' }, true],
    ['a > +5', { a: '6' }, true],
    ['-a < 0', { a: '5' }, false, 'negating a property gives null: its String is not a Number (UnaryExpression.createNegate)'],
    ['a = -NULL', {}, true, 'negation leaves no NULL literal for = to refuse, and null = null is TRUE'],
  ]);

  table('case-insensitive keywords, case-sensitive names', [
    ['a iS nOt NuLl aNd b BeTwEeN 1 AnD 3', { a: 'x', b: '2' }, true],
    ["TAGS In ('x') oR FaLsE", { TAGS: 'x' }, true],
    ["a not contains 'q' and a startswith 'h' and a endswith 'o'", { a: 'hello' }, true],
    ['true', {}, true],
    ['a = True', { a: 'TRUE' }, true],
    ["A = '1'", { a: '1' }, false],
    ["tags = 'x'", { TAGS: 'x' }, false],
    ["$x_1 = '1' AND _y = '2'", { $x_1: '1', _y: '2' }, true],
  ]);

  table('string literals', [
    ["a = 'it''s'", { a: "it's" }, true],
    ["a = ''''", { a: "'" }, true],
    ["a = ''", { a: '' }, true],
    ["TAGS IS NOT NULL AND TAGS = '''''tag'''''", { TAGS: "''tag''" }, true, 'filter/ExpressionTest testEvaluate_stringHasString'],
    ["a = 'x\ny'", { a: 'x\ny' }, true],
    ["a = '-- not a comment /* nor this */'", { a: '-- not a comment /* nor this */' }, true],
    ["a = 'żółw 🐢'", { a: 'żółw 🐢' }, true],
  ]);

  table('integer literals against string properties (Integer.valueOf / Long.valueOf)', [
    ['a = 3', { a: '3' }, true],
    ['a = 3', { a: '+3' }, true],
    ['a = 3', { a: '03' }, true],
    ['a = 0', { a: '-0' }, true],
    ['a = 3', { a: '٣' }, true, 'Character.digit takes any Unicode decimal digit (ARABIC-INDIC THREE)'],
    ['a = 3', { a: '３' }, true, 'FULLWIDTH DIGIT THREE'],
    ['a = 3', { a: '3.0' }, false, 'Integer.valueOf("3.0") throws: the message is not delivered'],
    ['a = 3', { a: ' 3' }, false, 'Integer.valueOf does not trim'],
    ['a > 3', { a: '3.5' }, false, 'the conversion follows the literal: an integer literal needs an integer property'],
    ['a > 3.0', { a: '3.5' }, true],
    ['a = 3L', { a: '3' }, true, 'L is accepted and ignored; 3L is still an Integer (ConstantExpression.createFromDecimal)'],
    ['a >= 2147483648', { a: '2147483648' }, true, 'a literal above 2^31-1 is a Long, so the property goes through Long.valueOf'],
    ['a > 2147483647', { a: '2147483648' }, false, 'an Integer literal: Integer.valueOf("2147483648") overflows and throws'],
    ['a > 2147483647.0', { a: '2147483648' }, true],
    ['a > 9223372036854775806', { a: '9223372036854775807' }, true, 'Long comparison is exact (doubles would call these equal)'],
    ['a > -2147483649', { a: '-2147483649' }, false],
    ['a >= -2147483649', { a: '-2147483649' }, true],
  ]);

  table('decimal literals against string properties (Double.valueOf)', [
    ['a = 1.5', { a: '1.5' }, true],
    ['a = 1.5', { a: '1.50' }, true],
    ['a = 1.5', { a: ' 1.5\t' }, true, 'Double.valueOf trims'],
    ['a = 1.5', { a: '1.5d' }, true, 'and accepts a type suffix'],
    ['a = 1.5', { a: '15e-1' }, true],
    ['a = 1.5', { a: '0x1.8p0' }, true, 'and hex floats'],
    ['a = 1.5', { a: '1,5' }, false],
    ['a > 1E3', { a: '1001' }, true],
    ['a = 5.', { a: '5' }, true],
    ['.5 < a', { a: '1' }, true],
    ['a > 3.1E10', { a: String(3.1415 * 10 ** 10) }, true, 'filter/ExpressionTest testEvaluate_exponent'],
    ['a > 1.0', { a: 'Infinity' }, true],
    ['a > 8.0', { a: '0x1.2p3' }, true],
    ['a < 1.0', { a: '0x1p-1074' }, true],
  ]);

  table('booleans', [
    ['a = TRUE', { a: 'true' }, true, 'a String against a Boolean goes through Boolean.valueOf: "true" in any case'],
    ['a = TRUE', { a: 'TRUE' }, true],
    ['a = TRUE', { a: 'yes' }, false],
    ['a = FALSE', { a: 'yes' }, true],
    ['TRUE = a', { a: 'true' }, false, "RocketMQ's Boolean-vs-String branch casts the Boolean to String and throws"],
    ["'true' = (a = '1')", { a: '1' }, true],
    ["(a = '1') = 'true'", { a: '1' }, false, 'the same ClassCastException with the Boolean on the left'],
    ['a = TRUE OR b = FALSE', { a: 'true', b: 'false' }, true, 'filter/ExpressionTest testEvaluate_boolean'],
    ['a = TRUE OR b = FALSE', { a: 'false', b: 'true' }, false],
    ['5 = TRUE', {}, false, 'Integer against Boolean: incomparable classes are unequal'],
    ['NOT (5 = TRUE)', {}, true],
    ['a', { a: 'true' }, false, 'a bare property is cast to boolean: its String is never a Boolean, so FALSE (UnaryExpression.createBooleanCast)'],
    ['a', {}, false],
    ['NOT a', { a: 'x' }, true, 'so NOT a means "a is set"'],
    ['NOT a', {}, false],
    ['a AND b', { a: 'x', b: 'y' }, false],
  ]);

  table('missing properties', [
    ['a > 5', {}, false],
    ['NOT (a > 5)', {}, false],
    ["a <> '1'", {}, false],
    ["'1' <> a", {}, true, "a missing right operand of = is FALSE, a missing left one unknown (ComparisonExpression.doCreateEqual), so '1' <> a delivers"],
    ["'1' = a", {}, false],
    ['a = b', {}, true, 'null = null is TRUE in doCreateEqual'],
    ['a = b', { a: '1' }, false],
    ['NOT (a = b)', { a: '1' }, true],
    ['NOT (a = b)', { b: '1' }, false],
    ["a NOT IN ('x')", {}, false, 'NOT IN is unknown for a missing property (UnaryExpression.createInExpression)'],
    ['a NOT BETWEEN 1 AND 2', {}, false],
    ['b > a', { b: '1' }, false],
  ]);

  table('failures: conversions that throw in RocketMQ deliver nothing (broker/filter/ExpressionMessageFilter.java)', [
    ['a = 5', { a: 'abc' }, false],
    ['NOT (a = 5)', { a: 'abc' }, false, 'a failure is not FALSE: NOT does not turn it into TRUE'],
    ['a <> 5', { a: 'abc' }, false],
    ['a > 3 OR b = 1', { a: 'x', b: '1' }, false, 'the left side throws before OR looks right'],
    ['b = 1 OR a > 3', { a: 'x', b: '1' }, true, 'OR stops at TRUE, so the failing side never runs'],
    ['b = 1 AND a > 3', { a: 'x', b: '2' }, false],
    ['a > 3 AND b = 1', { a: 'x', b: '2' }, false],
    ['a BETWEEN 0 AND 100', { a: 'abc' }, false, 'filter/ExpressionTest testEvaluate_stringCompare'],
    ['-(a > 3) IS NULL', { a: 'x' }, false, 'negation evaluates its operand, so the failure surfaces'],
    ['-(a > 3) IS NULL', { a: '5' }, true],
    ["(a > 3) CONTAINS ''", { a: 'x' }, false],
    ["NOT ((a > 3) NOT CONTAINS 'x')", { a: 'x' }, false, 'the operand of NOT CONTAINS is evaluated, and fails'],
    ["NOT ((a > 3) NOT CONTAINS 'x')", { a: '5' }, true, 'a Boolean is not a String: FALSE, so NOT of it is TRUE'],
  ]);

  table('comments, whitespace and adjacent tokens', [
    ['a = 1 /* comment */ AND b = 2', { a: '1', b: '2' }, true],
    ['a = 1 -- comment\nAND b = 2', { a: '1', b: '2' }, true],
    ['a = 1 -- comment\r\n', { a: '1' }, true],
    ['\ta\n=\r1\f', { a: '1' }, true],
    ['a=1AND b=2', { a: '1', b: '2' }, true, 'JavaCC needs no separator between 1 and AND'],
    ['a>-1', { a: '0' }, true],
  ]);
});

describe('compileSqlFilter: expressions RocketMQ refuses', () => {
  it.each([
    ["a > 'x'", 'string literal under >'],
    ['a > TRUE', 'boolean literal under >'],
    ['a > NULL', 'NULL under >'],
    ["'x' < a", 'string literal on the left'],
    ['a > (b = 1)', 'condition under >'],
    ['NOT a > 1', 'NOT a is a condition, which > refuses'],
    ['a > 1 > 2', 'chained comparison'],
    ['a BETWEEN 1 AND 2 BETWEEN 3 AND 4', 'BETWEEN of a condition'],
    ['a = NULL', 'NULL beside ='],
    ['NULL = a', 'NULL beside ='],
    ['a <> NULL', 'NULL beside <>'],
    ['a = (NULL)', 'parentheses leave no node'],
    ['TRUE = 5', 'boolean literal left of a number literal'],
    ["FALSE <> 'x'", 'boolean literal left of a string literal'],
    ['a BETWEEN 10 AND 0', 'bounds out of order'],
    ['a BETWEEN +10 AND +0', '+ leaves no node, so these are still literals'],
    ['a BETWEEN NULL AND 1', 'NULL bound'],
    ["a BETWEEN 'a' AND 'b'", 'string bounds'],
    ["5 IN ('a')", 'IN needs a property'],
    ["(a = 1) IN ('x')", 'IN needs a property'],
    ["-a IN ('x')", 'IN needs a property'],
    ['a IN (1, 2)', 'IN takes string literals only'],
    ['a IN ()', 'empty IN'],
    ['a CONTAINS x', 'CONTAINS takes a string literal'],
    ['a NOT STARTSWITH 123', 'STARTSWITH takes a string literal'],
    ['5', 'not a condition'],
    ["'x'", 'not a condition'],
    ['-a', 'not a condition'],
    ['a AND 5', 'not a condition'],
    ["NOT 'x'", 'not a condition'],
    ['a > 0.0', 'createFloat refuses anything below Double.MIN_VALUE'],
    ['a > 1e-400', 'underflows to zero'],
    ['a > 1e400', 'infinite'],
    ['a > 9223372036854775808', 'above Long.MAX_VALUE'],
    ['a = -9223372036854775808', 'the literal is read before its sign'],
    ['a != 1', 'no != in the grammar'],
    ["a LIKE 'x%'", 'no LIKE'],
    ['a = "x"', 'double quotes'],
    ['a.b = 1', 'no dots in identifiers'],
    ['ä = 1', 'ASCII identifiers only'],
    ['a = 0x10', 'no hex literals'],
    ['a = 010', 'no octal: 0 then 10'],
    ['a = 0L', '0 takes no L'],
    ['a = 1 b = 2', 'trailing text (RocketMQ ignores it; we refuse, see sql-filter.ts)'],
    ['a = 1 -- no line break', 'a -- comment needs a line break'],
    ['a = 1 /* unterminated', 'unterminated comment'],
    ['', 'empty'],
    ['   ', 'blank'],
    ['()', 'empty parentheses'],
    ['a IS 5', 'IS takes NULL or NOT NULL'],
  ])('%s (%s)', (expression) => {
    const error = compileError(expression);
    expect(error).toBeInstanceOf(FilterError);
    expect(error.unsupported).toBe(false);
    expect(error.message).toContain(`at column ${error.column}: expected `);
  });
});

describe('compileSqlFilter: error positions', () => {
  it.each([
    ['a > ', 5, 'expected a value, found end of input'],
    ["a = 'abc", 5, 'expected a closing quote for the string that starts here, found end of input'],
    ['a > 5 AND', 10, 'expected a value, found end of input'],
    ['a > 5 AND OR b', 11, 'expected a value, found OR'],
    ['a # 1', 3, "expected a property, literal, operator or parenthesis, found character '#'"],
    ['a != 1', 3, "found character '!' (write '<>' for not-equal)"],
    ['a IN ()', 7, "expected a string literal in IN (…), found ')'"],
    ["a IN ('x' 'y')", 11, "expected ',' or ')' in IN (…), found string 'y'"],
    ['a BETWEEN 1', 12, 'expected AND between the bounds of BETWEEN, found end of input'],
    ['a BETWEEN 10 AND 0', 11, 'expected a lower bound not above the upper bound 0, found number 10'],
    ["a > 'x'", 5, 'expected a number or a property as an operand of >, found string'],
    ['a = NULL', 5, 'found NULL'],
    ['NOT 5', 5, 'expected a condition (a comparison, TRUE, FALSE or a property), found number 5'],
    ["a contains x", 12, 'expected a string literal after CONTAINS, found property x'],
    ['(a = 1', 7, "expected ')', found end of input"],
    ['a = 1 b', 7, 'expected an operator or the end of the expression, found property b'],
    ['a = 1 -- note', 7, "found '-' (a -- comment needs a line break after it)"],
    ['a = 1\nAND b >\n', 15, 'expected a value, found end of input'],
    ['a = 1 /* open', 7, "expected '*/' to close the comment that starts here"],
    ['a > 0.0', 5, 'expected a non-zero decimal number'],
    ['', 1, 'expected a value, found end of input'],
  ])('%j fails at column %i', (expression, column, reason) => {
    const error = compileError(expression);
    expect(error.column).toBe(column);
    expect(error.reason).toContain(reason);
    expect(error.message).toBe(`SQL expression ${JSON.stringify(expression)} at column ${column}: ${error.reason}`);
  });

  it('names the example from the spec exactly', () => {
    expect(compileError('a > ').message).toBe('SQL expression "a > " at column 5: expected a value, found end of input');
  });

  it(`bounds nesting at ${sqlNestingDepthMax} levels`, () => {
    const nested = (depth: number) => `${'('.repeat(depth)}a = '1'${')'.repeat(depth)}`;
    expect(matches(nested(sqlNestingDepthMax), { a: '1' })).toBe(true);
    expect(compileError(nested(sqlNestingDepthMax + 1)).column).toBe(sqlNestingDepthMax + 1);
    expect(matches(`${'NOT '.repeat(sqlNestingDepthMax)}TRUE`)).toBe(true); // an even count of NOTs
    const tooManyNots = compileError(`${'NOT '.repeat(sqlNestingDepthMax + 1)}a`);
    expect(tooManyNots.column).toBe(4 * sqlNestingDepthMax + 1);
    expect(tooManyNots.reason).toContain(`at most ${sqlNestingDepthMax} levels`);
    expect(compileError(`a > ${'-'.repeat(sqlNestingDepthMax + 1)}1`).column).toBe(5 + sqlNestingDepthMax);
  });

  it(`bounds the length at ${sqlExpressionLengthMax} characters`, () => {
    const longest = `a IN (${Array.from({ length: 1000 }, () => "'x'").join(',')})`.padEnd(sqlExpressionLengthMax, ' ');
    expect(longest.length).toBe(sqlExpressionLengthMax);
    expect(matches(longest, { a: 'x' })).toBe(true);
    const error = compileError(`${longest} `);
    expect(error.column).toBe(sqlExpressionLengthMax + 1);
    expect(error.reason).toBe(`expected at most ${sqlExpressionLengthMax} characters, found ${sqlExpressionLengthMax + 1}`);
    expect(error.message.length).toBeLessThan(300); // the message quotes an excerpt, not the whole text
  });

  it('compiles and evaluates the deepest left-leaning chain the length allows', () => {
    // `a=a=…` nests one level per two characters without any parentheses: ~2048 levels.
    const chain = `a${'=a'.repeat(Math.floor((sqlExpressionLengthMax - 1) / 2))}`;
    expect(chain.length).toBeLessThanOrEqual(sqlExpressionLengthMax);
    expect(() => compileSqlFilter(chain).matches(lookupOf({ a: 'x' }))).not.toThrow();
  });
});

describe('referencedProperties', () => {
  it('lists each property once, in order of first appearance', () => {
    const filter = compileSqlFilter("TAGS = 'x' AND (b > 1 OR a IN ('y') OR b IS NULL) AND -c < 0");
    expect(referencedProperties(filter)).toEqual(['TAGS', 'b', 'a', 'c']);
    expect(Object.isFrozen(referencedProperties(filter))).toBe(true);
  });

  it('is empty for constant expressions', () => {
    expect(referencedProperties(compileSqlFilter('TRUE AND 1 < 2'))).toEqual([]);
  });

  it('asserts that the filter came from compileSqlFilter', () => {
    const foreign: SqlFilter = { expression: 'TRUE', matches: () => true };
    expect(() => referencedProperties(foreign)).toThrow(InvariantViolation);
  });

  it('keeps the expression text', () => {
    expect(compileSqlFilter(" a = '1' ").expression).toBe(" a = '1' ");
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests: generated trees against a plain reference evaluator
// ---------------------------------------------------------------------------------------------

type RelationalOperator = '>' | '>=' | '<' | '<=';
type TextOperator = 'CONTAINS' | 'STARTSWITH' | 'ENDSWITH';

/** The expression as written, before RocketMQ's parser rewrites <>, BETWEEN and IS NOT NULL. */
type Ast =
  | { readonly kind: 'prop'; readonly name: string }
  | { readonly kind: 'str'; readonly value: string }
  | { readonly kind: 'int' | 'float'; readonly text: string }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'null' }
  | { readonly kind: 'neg' | 'not'; readonly operand: Ast }
  | { readonly kind: 'and' | 'or' | 'eq' | 'ne'; readonly left: Ast; readonly right: Ast }
  | { readonly kind: 'isNull'; readonly negated: boolean; readonly operand: Ast }
  | { readonly kind: 'rel'; readonly operator: RelationalOperator; readonly left: Ast; readonly right: Ast }
  | { readonly kind: 'between'; readonly negated: boolean; readonly operand: Ast; readonly low: Ast; readonly high: Ast }
  | { readonly kind: 'in'; readonly negated: boolean; readonly name: string; readonly values: readonly string[] }
  | { readonly kind: 'text'; readonly operator: TextOperator; readonly negated: boolean; readonly operand: Ast; readonly search: string };

const propertyNames = ['a', 'b', 'TAGS', 'x$_1'] as const;
const integerTexts = ['0', '1', '3', '10', '2147483647', '2147483648', '9223372036854775807', '5L', '7l'];
const floatTexts = ['1.5', '2.', '.5', '3e0', '1E1', '2.5e-1', '10.0', '3.0', '1e3', '0.1'];
const stringTexts = ['', 'x', 'abc', "it's", '1', '3', 'true', '3.5', '--', '/*'];
const propertyValues = ['', '0', '1', '3', '-2', '+7', '10', '3.5', '1e3', '2147483648', '9223372036854775807', '9223372036854775808',
  'abc', 'x', 'true', 'TRUE', 'false', 'NaN', '-Infinity', ' 3', '1.5d', '-0', '-0.0', "it's", '10.0', '3.0'];

const depth = { maxDepth: 4, depthIdentifier: 'sql-ast', withCrossShrink: true } as const;

const { condition: conditionArb } = fc.letrec<{ condition: Ast; number: Ast; value: Ast; equatable: Ast }>((tie) => {
  const prop = fc.constantFrom(...propertyNames).map((name): Ast => ({ kind: 'prop', name }));
  const integer = fc.constantFrom(...integerTexts).map((text): Ast => ({ kind: 'int', text }));
  const float = fc.constantFrom(...floatTexts).map((text): Ast => ({ kind: 'float', text }));
  const string = fc.constantFrom(...stringTexts).map((value): Ast => ({ kind: 'str', value }));
  const leafCondition = fc.oneof(
    prop,
    fc.boolean().map((value): Ast => ({ kind: 'bool', value })),
    fc.constant<Ast>({ kind: 'null' }),
  );
  return {
    condition: fc.oneof(depth,
      leafCondition,
      tie('condition').map((operand): Ast => ({ kind: 'not', operand })),
      fc.tuple(fc.constantFrom('and' as const, 'or' as const), tie('condition'), tie('condition')).map(([kind, left, right]): Ast => ({ kind, left, right })),
      fc.tuple(fc.constantFrom('eq' as const, 'ne' as const), tie('equatable'), tie('equatable'))
        .filter(([, left, right]) => !(left.kind === 'bool' && (right.kind === 'str' || right.kind === 'int' || right.kind === 'float')))
        .map(([kind, left, right]): Ast => ({ kind, left, right })),
      fc.tuple(fc.boolean(), tie('value')).map(([negated, operand]): Ast => ({ kind: 'isNull', negated, operand })),
      fc.tuple(fc.constantFrom<RelationalOperator>('>', '>=', '<', '<='), tie('number'), tie('number')).map(([operator, left, right]): Ast => ({ kind: 'rel', operator, left, right })),
      fc.tuple(fc.boolean(), tie('number'), tie('number'), tie('number'))
        .filter(([negated, , low, high]) => negated || !boundsOutOfOrder(low, high))
        .map(([negated, operand, low, high]): Ast => ({ kind: 'between', negated, operand, low, high })),
      fc.tuple(fc.boolean(), fc.constantFrom(...propertyNames), fc.array(fc.constantFrom(...stringTexts), { minLength: 1, maxLength: 3 }))
        .map(([negated, name, values]): Ast => ({ kind: 'in', negated, name, values })),
      fc.tuple(fc.constantFrom<TextOperator>('CONTAINS', 'STARTSWITH', 'ENDSWITH'), fc.boolean(), tie('value'), fc.constantFrom(...stringTexts))
        .map(([operator, negated, operand, search]): Ast => ({ kind: 'text', operator, negated, operand, search })),
    ),
    // What >, >=, <, <= and BETWEEN accept: properties, number literals and negations of anything.
    number: fc.oneof(depth, prop, integer, float, tie('value').map((operand): Ast => ({ kind: 'neg', operand }))),
    value: fc.oneof(depth, tie('number'), string, tie('condition')),
    equatable: tie('value').filter((ast) => ast.kind !== 'null'),
  };
});

const propertiesArb: fc.Arbitrary<Properties> = fc.record(
  Object.fromEntries(propertyNames.map((name) => [name, fc.oneof(fc.constantFrom(...propertyValues), fc.string({ maxLength: 4 }))])),
  { requiredKeys: [] },
) as fc.Arbitrary<Properties>;

/** Binding strength, loosest first, as in SelectorParser.jj. */
function precedence(ast: Ast): number {
  switch (ast.kind) {
    case 'or': return 1;
    case 'and': return 2;
    case 'eq': case 'ne': case 'isNull': return 3;
    case 'rel': case 'between': case 'in': case 'text': return 4;
    case 'neg': case 'not': return 5;
    case 'prop': case 'str': case 'int': case 'float': case 'bool': case 'null': return 6;
  }
}

const quote = (text: string): string => `'${text.replaceAll("'", "''")}'`;

/** Minimal parentheses; `lower` writes keywords in lower case (they are case-insensitive). */
function print(ast: Ast, lower: boolean, minimum = 0): string {
  const k = (keyword: string) => (lower ? keyword.toLowerCase() : keyword);
  const sub = (child: Ast, level: number) => print(child, lower, level);
  let text: string;
  switch (ast.kind) {
    case 'prop': text = ast.name; break;
    case 'str': text = quote(ast.value); break;
    case 'int': case 'float': text = ast.text; break;
    case 'bool': text = k(ast.value ? 'TRUE' : 'FALSE'); break;
    case 'null': text = k('NULL'); break;
    case 'neg': {
      const operand = sub(ast.operand, 5);
      text = `-${operand.startsWith('-') ? ' ' : ''}${operand}`; // `--` would start a comment
      break;
    }
    case 'not': text = `${k('NOT')} ${sub(ast.operand, 5)}`; break;
    case 'and': text = `${sub(ast.left, 2)} ${k('AND')} ${sub(ast.right, 3)}`; break;
    case 'or': text = `${sub(ast.left, 1)} ${k('OR')} ${sub(ast.right, 2)}`; break;
    case 'eq': case 'ne': text = `${sub(ast.left, 3)} ${ast.kind === 'eq' ? '=' : '<>'} ${sub(ast.right, 4)}`; break;
    case 'isNull': text = `${sub(ast.operand, 3)} ${k(ast.negated ? 'IS NOT NULL' : 'IS NULL')}`; break;
    case 'rel': text = `${sub(ast.left, 4)} ${ast.operator} ${sub(ast.right, 5)}`; break;
    case 'between': text = `${sub(ast.operand, 4)} ${k(ast.negated ? 'NOT BETWEEN' : 'BETWEEN')} ${sub(ast.low, 5)} ${k('AND')} ${sub(ast.high, 5)}`; break;
    case 'in': text = `${ast.name} ${k(ast.negated ? 'NOT IN' : 'IN')} (${ast.values.map(quote).join(', ')})`; break;
    case 'text': text = `${sub(ast.operand, 4)} ${k(`${ast.negated ? 'NOT ' : ''}${ast.operator}`)} ${quote(ast.search)}`; break;
  }
  return precedence(ast) < minimum ? `(${text})` : text;
}

function namesIn(ast: Ast, into = new Set<string>()): Set<string> {
  switch (ast.kind) {
    case 'prop': case 'in': into.add(ast.name); break;
    case 'str': case 'int': case 'float': case 'bool': case 'null': break;
    case 'neg': case 'not': case 'isNull': case 'text': namesIn(ast.operand, into); break;
    case 'and': case 'or': case 'eq': case 'ne': case 'rel': namesIn(ast.left, into); namesIn(ast.right, into); break;
    case 'between': namesIn(ast.operand, into); namesIn(ast.low, into); namesIn(ast.high, into); break;
  }
  return into;
}

// The reference: RocketMQ's classes transcribed plainly. Values are boxed like Java objects,
// and where Java throws, this throws; the broker catches and does not deliver.

type Boxed =
  | { readonly cls: 'String'; readonly v: string }
  | { readonly cls: 'Boolean'; readonly v: boolean }
  | { readonly cls: 'Integer' | 'Long'; readonly v: bigint }
  | { readonly cls: 'Double'; readonly v: number }
  | null;
type Box = NonNullable<Boxed>;

class JavaThrows extends Error {}

interface ReferenceOptions {
  /** The mutation for the negative control: a comparison with a missing operand is TRUE. */
  readonly missingComparesTrue: boolean;
}

const TRUE: Boxed = { cls: 'Boolean', v: true };
const FALSE: Boxed = { cls: 'Boolean', v: false };
const bool = (v: boolean): Boxed => (v ? TRUE : FALSE);

function javaIntegral(text: string, cls: 'Integer' | 'Long'): Box {
  // The generated property values are ASCII, so this skips Character.digit's other digits.
  if (!/^[+-]?[0-9]+$/.test(text)) throw new JavaThrows(`NumberFormatException: ${text}`);
  const v = BigInt(text);
  const bits = cls === 'Integer' ? 32 : 64;
  if (v !== BigInt.asIntN(bits, v)) throw new JavaThrows(`NumberFormatException: ${text} out of range`);
  return { cls, v };
}

/** Double.valueOf without hex floats (the generated values have none). */
function javaDouble(text: string): Box {
  let start = 0;
  let end = text.length;
  while (start < end && text.charCodeAt(start) <= 32) start += 1;
  while (end > start && text.charCodeAt(end - 1) <= 32) end -= 1;
  const trimmed = text.slice(start, end);
  const special = /^[+-]?(NaN|Infinity)$/.exec(trimmed);
  if (special !== null) return { cls: 'Double', v: trimmed.startsWith('-') && special[1] === 'Infinity' ? -Infinity : special[1] === 'NaN' ? NaN : Infinity };
  const decimal = /^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fFdD]?$/.exec(trimmed);
  if (decimal === null) throw new JavaThrows(`NumberFormatException: ${text}`);
  return { cls: 'Double', v: Number(decimal[1]) };
}

function doubleBits(value: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Number.isNaN(value) ? NaN : value);
  return Number.isNaN(value) ? 0x7ff8000000000000n : view.getBigInt64(0);
}

/** Comparable.compareTo for two boxes of the same class. */
function compareTo(left: Box, right: Box): number {
  if (left.cls === 'Double' && right.cls === 'Double') {
    // Double.compare
    if (left.v < right.v) return -1;
    if (left.v > right.v) return 1;
    const a = doubleBits(left.v);
    const b = doubleBits(right.v);
    return a === b ? 0 : a < b ? -1 : 1;
  }
  if (left.cls === 'Boolean' && right.cls === 'Boolean') return left.v === right.v ? 0 : left.v ? 1 : -1;
  if (left.cls === 'String' && right.cls === 'String') return left.v < right.v ? -1 : left.v > right.v ? 1 : 0;
  if ((left.cls === 'Integer' || left.cls === 'Long') && left.cls === right.cls) return left.v < right.v ? -1 : left.v > right.v ? 1 : 0;
  throw new Error(`compareTo on ${left.cls} and ${right.cls}`);
}

const toDouble = (box: Box): Box => ({ cls: 'Double', v: Number(box.v) });

/** ComparisonExpression.__compare with convertStringExpressions on. */
function javaCompare(leftIn: Box, rightIn: Box): number {
  let left = leftIn;
  let right = rightIn;
  if (left.cls !== right.cls) {
    if (left.cls === 'Boolean') {
      if (right.cls === 'String') throw new JavaThrows('ClassCastException: Boolean cannot be cast to String');
      return -1;
    } else if (left.cls === 'Integer') {
      if (right.cls === 'Long') left = { cls: 'Long', v: left.v };
      else if (right.cls === 'Double') left = toDouble(left);
      else if (right.cls === 'String') right = javaIntegral(right.v, 'Integer');
      else return -1;
    } else if (left.cls === 'Long') {
      if (right.cls === 'Integer') right = { cls: 'Long', v: right.v };
      else if (right.cls === 'Double') left = toDouble(left);
      else if (right.cls === 'String') right = javaIntegral(right.v, 'Long');
      else return -1;
    } else if (left.cls === 'Double') {
      if (right.cls === 'Integer' || right.cls === 'Long') right = toDouble(right);
      else if (right.cls === 'String') right = javaDouble(right.v);
      else return -1;
    } else if (left.cls === 'String') {
      if (right.cls === 'Boolean') left = { cls: 'Boolean', v: left.v.toLowerCase() === 'true' };
      else if (right.cls === 'Integer' || right.cls === 'Long') left = javaIntegral(left.v, right.cls);
      else left = javaDouble(left.v);
    }
  }
  return compareTo(left, right);
}

function javaEquals(left: Box, right: Box): boolean {
  if (left.cls !== right.cls) return false;
  return left.cls === 'Double' && right.cls === 'Double' ? doubleBits(left.v) === doubleBits(right.v) : left.v === right.v;
}

function literal(ast: Ast): Boxed {
  if (ast.kind === 'str') return { cls: 'String', v: ast.value };
  if (ast.kind === 'float') return { cls: 'Double', v: Number(ast.text) };
  if (ast.kind === 'int') {
    const v = BigInt(ast.text.replace(/[lL]$/, ''));
    return { cls: v <= 2147483647n ? 'Integer' : 'Long', v };
  }
  if (ast.kind === 'bool') return bool(ast.value);
  return null;
}

function boundsOutOfOrder(low: Ast, high: Ast): boolean {
  const isNumber = (ast: Ast) => ast.kind === 'int' || ast.kind === 'float';
  if (!isNumber(low) || !isNumber(high)) return false;
  const lowBox = literal(low);
  const highBox = literal(high);
  return lowBox !== null && highBox !== null && javaCompare(highBox, lowBox) < 0;
}

function referenceMatches(ast: Ast, properties: Properties, options: ReferenceOptions = { missingComparesTrue: false }): boolean {
  const get = (name: string): Boxed => (Object.hasOwn(properties, name) ? { cls: 'String', v: properties[name] ?? '' } : null);

  const equal = (leftAst: Ast, rightAst: Ast): Boxed => {
    const left = evaluate(leftAst);
    const right = evaluate(rightAst);
    if (options.missingComparesTrue && (left === null || right === null)) return TRUE;
    if ((left === null) !== (right === null)) return left === null ? null : FALSE;
    if (left === null || right === null) return TRUE;
    if (javaEquals(left, right)) return TRUE;
    return bool(javaCompare(left, right) === 0);
  };

  const relational = (operator: RelationalOperator, leftAst: Ast, rightAst: Ast): Boxed => {
    const left = evaluate(leftAst);
    if (left === null) return options.missingComparesTrue ? TRUE : null;
    const right = evaluate(rightAst);
    if (right === null) return options.missingComparesTrue ? TRUE : null;
    // Two Strings under >, >=, <, <= both go through Double.valueOf (ComparisonExpression.evaluate).
    const bothStrings = left.cls === 'String' && right.cls === 'String';
    const order = bothStrings ? javaCompare(javaDouble(left.v), javaDouble(right.v)) : javaCompare(left, right);
    return bool(operator === '>' ? order > 0 : operator === '>=' ? order >= 0 : operator === '<' ? order < 0 : order <= 0);
  };

  const not = (box: Boxed): Boxed => (box === null ? null : bool(!box.v));

  /** A condition operand: a bare property is cast (createBooleanCast). */
  const condition = (operand: Ast): Boxed => {
    if (operand.kind !== 'prop') return evaluate(operand);
    const value = get(operand.name);
    return value === null ? null : value.cls === 'Boolean' ? value : FALSE;
  };

  const and = (left: Ast, right: Ast): Boxed => {
    const l = condition(left);
    if (l !== null && l.v === false) return FALSE;
    const r = condition(right);
    if (r !== null && r.v === false) return FALSE;
    return l === null || r === null ? null : TRUE;
  };

  const or = (left: Ast, right: Ast): Boxed => {
    const l = condition(left);
    if (l !== null && l.v === true) return TRUE;
    const r = condition(right);
    if (r !== null && r.v === true) return TRUE;
    return l === null || r === null ? null : FALSE;
  };

  function evaluate(ast: Ast): Boxed {
    switch (ast.kind) {
      case 'prop': return get(ast.name);
      case 'str': case 'int': case 'float': case 'bool': case 'null': return literal(ast);
      case 'neg': {
        const value = evaluate(ast.operand);
        if (value === null) return null;
        if (value.cls === 'Integer' || value.cls === 'Long') return { cls: value.cls, v: -value.v };
        if (value.cls === 'Double') return { cls: 'Double', v: -value.v };
        return null;
      }
      case 'not': return not(condition(ast.operand));
      case 'and': return and(ast.left, ast.right);
      case 'or': return or(ast.left, ast.right);
      case 'eq': return equal(ast.left, ast.right);
      case 'ne': return not(equal(ast.left, ast.right));
      case 'isNull': {
        const isNull = evaluate(ast.operand) === null ? TRUE : FALSE;
        return ast.negated ? not(isNull) : isNull;
      }
      case 'rel': return relational(ast.operator, ast.left, ast.right);
      case 'between': {
        const { operand, low, high } = ast;
        if (!ast.negated) {
          const lowOk = relational('>=', operand, low);
          if (lowOk !== null && lowOk.v === false) return FALSE;
          const highOk = relational('<=', operand, high);
          if (highOk !== null && highOk.v === false) return FALSE;
          return lowOk === null || highOk === null ? null : TRUE;
        }
        const below = relational('<', operand, low);
        if (below !== null && below.v === true) return TRUE;
        const above = relational('>', operand, high);
        if (above !== null && above.v === true) return TRUE;
        return below === null || above === null ? null : FALSE;
      }
      case 'in': {
        const value = get(ast.name);
        if (value === null || value.cls !== 'String') return null;
        return bool(ast.values.includes(value.v) !== ast.negated);
      }
      case 'text': {
        if (ast.search === '') return FALSE;
        const value = evaluate(ast.operand);
        if (value === null || value.cls !== 'String') return FALSE;
        const found = ast.operator === 'CONTAINS' ? value.v.includes(ast.search)
          : ast.operator === 'STARTSWITH' ? value.v.startsWith(ast.search)
          : value.v.endsWith(ast.search);
        return bool(found !== ast.negated);
      }
    }
  }

  try {
    const result = condition(ast);
    return result !== null && result.cls === 'Boolean' && result.v;
  } catch (error) {
    if (error instanceof JavaThrows) return false;
    throw error;
  }
}

const propertyRuns = { numRuns: 500 } as const;

const agreesWith = (options: ReferenceOptions) => fc.property(conditionArb, fc.boolean(), propertiesArb, (ast, lower, properties) => {
  const filter = compileSqlFilter(print(ast, lower));
  return filter.matches(lookupOf(properties)) === referenceMatches(ast, properties, options);
});

describe('compileSqlFilter: properties', () => {
  it('agrees with the reference evaluator on generated expressions', () => {
    fc.assert(agreesWith({ missingComparesTrue: false }), propertyRuns);
  });

  it('compiles every printed well-formed tree, reading exactly its properties', () => {
    fc.assert(fc.property(conditionArb, fc.boolean(), (ast, lower) => {
      const filter = compileSqlFilter(print(ast, lower));
      expect([...referencedProperties(filter)].sort()).toEqual([...namesIn(ast)].sort());
    }), propertyRuns);
  });

  it('throws nothing but SqlFilterError on arbitrary text, and compiled filters never throw', () => {
    const fragments = ['a', 'b', 'TAGS', "'x'", "'", '1', '2.5', '.', 'e', '0', 'L', '(', ')', ',', '=', '<>', '>', '>=', '<', '<=', '+', '-', '--',
      '/*', '*/', '\n', ' ', 'NOT', 'AND', 'OR', 'IN', 'IS', 'NULL', 'TRUE', 'BETWEEN', 'CONTAINS', 'STARTSWITH', 'ENDSWITH', '!', '#', 'é'];
    const soup = fc.array(fc.constantFrom(...fragments), { maxLength: 12 }).chain((parts) => fc.constantFrom(parts.join(' '), parts.join('')));
    // Any UTF-16 units, lone surrogates included (fc.string's 'binary' unit costs ~0.7 s to set up).
    const utf16 = fc.array(fc.nat({ max: 0xffff }), { maxLength: 12 }).map((units) => String.fromCharCode(...units));
    fc.assert(fc.property(fc.oneof(soup, fc.string({ maxLength: 30 }), utf16), propertiesArb, (text, properties) => {
      let filter: SqlFilter;
      try {
        filter = compileSqlFilter(text);
      } catch (error) {
        // Plain checks rather than expect(): this body runs hundreds of times.
        return error instanceof SqlFilterError && error.column >= 1 && error.column <= text.length + 1;
      }
      return typeof filter.matches(lookupOf(properties)) === 'boolean';
    }), propertyRuns);
  });

  it('can fail: a reference that treats comparisons with a missing property as TRUE disagrees', () => {
    const result = fc.check(agreesWith({ missingComparesTrue: true }), { ...propertyRuns, seed: 20_250_601 });
    expect(result.failed).toBe(true);
  });
});
