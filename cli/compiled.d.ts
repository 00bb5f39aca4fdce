// Types of cli/compiled.js (plain JavaScript, as cli/bin.js loads it before any TypeScript can be).
export declare const ROOT: string;
export declare const PRODUCT_FOLDERS: readonly string[];
export declare const BUILD_STAMP: string;
export declare function currentCompiledEntry(outDir?: string): string | undefined;
