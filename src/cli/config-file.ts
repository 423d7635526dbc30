/**
 * `--config <file>` for the server commands (`broker`, `namesrv`, `node`): a JSON object
 * whose keys are the command's long options in camelCase, as commander names them
 * (`--tls-cert` → `tlsCert`, `--no-peer-lane` → `peerLane: false`), plus `tlsCa`, which on
 * the command line is the root option `raftmq --tls-ca`. A flag given on the command line wins
 * over the file; the file wins over the defaults. Values go through the same parsers as the
 * flags, so `tickMs: 0` is refused as `--tick-ms 0` is; an unknown key or a value of the
 * wrong type is an error naming the key and the file. Paths in the file are taken from the
 * current directory, as the flags' are.
 *
 * JSON rather than YAML: no parser dependency, and it is what tools that template config
 * (Helm, Ansible, jq) all emit.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command, type Option } from 'commander';

/** Options whose value is a comma-separated list on the command line: the file may give an array. */
const listKeys = new Set(['members', 'namesrv']);

/** The root program's options a server's file may set. */
const rootKeys = new Set(['tlsCa']);

export function withConfigFileOption(command: Command): Command {
  return command.option('--config <file>', 'read options from this JSON file (keys: the long options in camelCase, e.g. "tlsCert"; flags on the command line win)');
}

/** The `--config` value among a subcommand's raw arguments, if it was given. */
function configFileArgument(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') return undefined;
    if (arg === '--config') return args[i + 1];
    if (arg.startsWith('--config=')) return arg.slice('--config='.length);
  }
  return undefined;
}

/**
 * Root program hook (preSubcommand): before a server command parses its flags, sets the
 * options its config file names, with source 'config', so flags parsed next overwrite them
 * and required options given only in the file count as given.
 */
export function loadConfigFileBeforeParse(program: Command, subcommand: Command): void {
  if (!subcommand.options.some((option) => option.long === '--config')) return;
  // The root parsed its own options already; what is left starts with the subcommand's name.
  const file = configFileArgument(program.args.slice(1));
  if (file === undefined) return;
  for (const [key, value] of Object.entries(readConfigObject(file))) {
    if (rootKeys.has(key)) {
      // The root option was parsed already: a --tls-ca on the command line stays.
      if (program.getOptionValueSource(key) !== 'cli') program.setOptionValueWithSource(key, stringValue(file, key, value), 'config');
      continue;
    }
    const option = subcommand.options.find((candidate) => candidate.attributeName() === key && candidate.long !== '--config');
    if (option === undefined) {
      const known = [...subcommand.options.filter((o) => o.long !== '--config' && !o.hidden).map((o) => o.attributeName()), ...rootKeys].sort();
      throw new Error(`${file}: unknown key "${key}" for raftmq ${subcommand.name()} (known: ${known.join(', ')})`);
    }
    subcommand.setOptionValueWithSource(key, optionValue(file, key, option, value), 'config');
  }
}

function readConfigObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read config file ${file}: ${(error as Error).message}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${file}: the config must be a JSON object of option names to values`);
  return parsed as Record<string, unknown>;
}

function stringValue(file: string, key: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (listKeys.has(key) && Array.isArray(value) && value.every((item) => typeof item === 'string')) return value.join(',');
  throw new Error(`${file}: "${key}" must be ${listKeys.has(key) ? 'a string or an array of strings' : 'a string or a number'}, not ${describe(value)}`);
}

/** What the flag would have stored for the same value, or an error naming the key and file. */
function optionValue(file: string, key: string, option: Option, value: unknown): unknown {
  if (!option.required && !option.optional) {
    if (typeof value !== 'boolean') throw new Error(`${file}: "${key}" must be true or false, not ${describe(value)}`);
    return value;
  }
  const text = stringValue(file, key, value);
  if (option.argChoices !== undefined && !option.argChoices.includes(text)) {
    throw new Error(`${file}: "${key}" must be one of ${option.argChoices.join(', ')}, not ${JSON.stringify(value)}`);
  }
  if (option.parseArg === undefined) return text;
  try {
    return option.parseArg(text, undefined);
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new Error(`${file}: "${key}": ${error.message}`, { cause: error });
    throw error;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}
