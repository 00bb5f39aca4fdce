// Lint rules that catch the bugs this codebase cares about: promises nobody awaits
// (a lost write or an unhandled rejection) and type-only imports kept apart from values.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'display/web/dist/', 'data/', 'cli/bin.js', 'eslint.config.js'] },
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
  { files: ['core/config.ts', 'test/**/*.ts', 'bench/**/*.ts', 'soak/**/*.ts'], rules: { 'no-restricted-properties': 'off' } },
);
