// Lint rules that catch the bugs this codebase cares about: promises nobody awaits
// (a lost write or an unhandled rejection) and type-only imports kept apart from values; and the
// picture of ARCHITECTURE.md ("Folders"): which folder may import which, enforced, not remembered.
import tseslint from 'typescript-eslint';

/** Every top-level folder of ours that code may import from. */
const FOLDERS = ['core', 'store', 'broker', 'firmware-sim', 'ingest', 'display', 'alerts', 'cli', 'test', 'harness', 'bench', 'soak'];

/**
 * A rule that refuses imports of the named folders from the files given. Imports are relative
 * ('../core/x.ts', '../../../core/x.ts' from display/web/src), so a folder is matched as the first
 * name after the leading '../'s.
 */
function mayNotImport(files, forbidden, why) {
  const regex = `^(\\.\\./)+(${forbidden.join('|')})/`;
  return { files, rules: { 'no-restricted-imports': ['error', { patterns: [{ regex, message: why }] }] } };
}
const except = (...allowed) => FOLDERS.filter((folder) => !allowed.includes(folder));
const COMPONENTS = 'Components never import each other: they meet on MQTT topics and in the store (ARCHITECTURE.md, Folders).';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'test-artifacts/', 'display/web/dist/', 'data/', 'cli/bin.js', 'eslint.config.js'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read configuration through core/config.ts only.' }],
    },
  },
  { files: ['core/config.ts', 'test/**/*.ts', 'harness/**/*.ts', 'bench/**/*.ts', 'soak/**/*.ts'], rules: { 'no-restricted-properties': 'off' } },
  // The import picture, one rule per floor.
  mayNotImport(['core/**/*.ts'], except(), 'core/ is the contract: it imports nothing of ours.'),
  mayNotImport(['store/**/*.ts'], except('core'), 'The store port knows core/ only, never a component that uses it.'),
  mayNotImport(['broker/**/*.ts', 'firmware-sim/**/*.ts'], except('core'), COMPONENTS),
  mayNotImport(['ingest/**/*.ts', 'display/**/*.ts', 'alerts/**/*.ts'], except('core', 'store'), COMPONENTS),
  mayNotImport(['cli/**/*.ts'], ['test', 'harness', 'bench', 'soak'], 'Production code never imports tests, the harness, benches or the soak.'),
  mayNotImport(['harness/**/*.ts', 'bench/**/*.ts', 'soak/**/*.ts'], ['test'], 'test/ holds tests only; what benches and the soak share with tests lives in harness/.'),
);
