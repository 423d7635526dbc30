// Lint keeps the layer arrows of DESIGN §3 pointing down and keeps time and randomness
// out of the pure Raft core. The tidy test (test/tidy.test.ts) double-checks the core by text.
import tseslint from 'typescript-eslint';

// Import paths are relative ('../../commitlog/commit-log.js'), so a layer is matched by name.
const layerPatterns = (layers) => layers.map((name) => `**/${name}/**`);
const layer = (files, forbiddenLayers, message) => ({
  files,
  ignores: ['**/*.test.ts'], // tests beside the code may use the simulator
  rules: {
    'no-restricted-imports': ['error', { patterns: [{ group: layerPatterns(forbiddenLayers), message }] }],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'bench/results/**', 'jepsen-tests/results/**'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  {
    files: ['src/raft/core/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:*', 'fs', 'net', 'timers', 'crypto'], message: 'raft/core is pure: no I/O' },
          { group: ['**/node/**', '**/commitlog/**', '**/server/**', '**/broker/**', '**/testing/**', '**/client/**', '**/cli/**'], message: 'raft/core imports only raft/types and util' },
        ],
      }],
      'no-restricted-globals': ['error', 'Date', 'setTimeout', 'setInterval', 'setImmediate', 'performance', 'process'],
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'inject a RandomSource' }],
    },
  },
  {
    // The broker's apply code: deterministic on every node, so no clock, timers or randomness.
    // Its service layer (src/broker/*.ts) reaches time only through a ServiceClock port, so the
    // simulator runs the real broker; the layer rule below replaces the import rule there.
    files: ['src/broker/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        { group: ['node:*', 'fs', 'net', 'timers', 'crypto'], message: 'broker/core is pure: no I/O' },
        { group: ['**/node/**', '**/commitlog/**', '**/server/**', '**/testing/**', '**/client/**', '**/cli/**'], message: 'broker/core imports only its own modules and util' },
      ] }],
      'no-restricted-globals': ['error', 'Date', 'setTimeout', 'setInterval', 'setImmediate', 'performance', 'process'],
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'apply must be deterministic' }],
    },
  },
  layer(['src/broker/*.ts'], ['commitlog', 'server', 'testing', 'client', 'cli'], 'broker depends on raft ports and its core only'),
  layer(['src/namesrv/**/*.ts'], ['raft', 'commitlog', 'server', 'broker', 'testing', 'client', 'cli'], 'namesrv is a pure registry'),
  layer(['src/raft/node/**/*.ts'], ['commitlog', 'server', 'broker', 'testing', 'client', 'cli'], 'raft/node depends on raft/core and its own ports only'),
  // The commitlog implements raft/node's storage ports (LogStore, SnapshotStore): it may name their types, nothing more.
  {
    files: ['src/commitlog/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        { group: layerPatterns(['node']), allowTypeImports: true, message: 'commitlog may import raft/node port types only' },
        { group: layerPatterns(['core', 'server', 'broker', 'testing', 'client', 'cli']), message: 'commitlog depends on raft/types and util only' },
      ] }],
    },
  },
  layer(['src/util/**/*.ts', 'src/raft/*.ts'], ['node', 'core', 'commitlog', 'server', 'broker', 'testing', 'client', 'cli'], 'util and raft types are leaves'),
  layer(['src/client/**/*.ts'], ['raft', 'commitlog', 'server', 'broker', 'testing', 'cli'], 'the client depends only on the protocol definitions'),
  layer(['src/server/**/*.ts', 'src/cli/**/*.ts', 'bench/**/*.ts'], ['testing'], 'src/testing is for tests only'),
);
