/**
 * The extension's pure parts: which settings reach the server, which documents it serves, the
 * server command and the expansions it answers. No `vscode` import, so `node --test` runs them.
 */

export const SECTION = "promptAutocomplete";
export const EXPAND_COMMAND = "promptAutocomplete.expand";

/** Settings the server reads (server/settings.py); package.json contributes each of them. */
export const SERVER_KEYS = [
  "model",
  "maxItems",
  "temperature",
  "maxExpansionTokens",
  "timeBudgetMs",
  "blocklist",
  "safeMode",
  "corpusStatistics",
  "menuSkipsGhost",
  "languageIds",
  "filePatterns",
  "threads",
  "tokenLimit",
  "tagPacks",
  "tagUnderscores",
  "loraDirs",
  "embeddingDirs",
  "wildcardDirs",
  "learn",
] as const;

/** Settings only the extension reads; never sent (the server reports unknown keys). */
export const EXTENSION_KEYS = ["serverCommand"] as const;

export const DEFAULT_SERVER_COMMAND = ["prompt-ls"];
export const DEFAULT_LANGUAGE_IDS = ["plaintext", "text", "txt", "markdown", "prompt"];
export const DEFAULT_FILE_PATTERNS = ["*.prompt"];

/** What `WorkspaceConfiguration.inspect` tells about one setting (the fields used here). */
export interface Inspected {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/**
 * The server settings the user set, most specific scope first. Unset ones are left out so that
 * the server's own defaults apply, some of which depend on the client (menuSkipsGhost).
 */
export function explicitSettings(
  inspect: (key: string) => Inspected | undefined,
): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of SERVER_KEYS) {
    const scopes = inspect(key);
    const value = scopes?.workspaceFolderValue ?? scopes?.workspaceValue ?? scopes?.globalValue;
    if (value !== undefined) {
      settings[key] = value;
    }
  }
  return settings;
}

export type DocumentFilter = { language: string } | { pattern: string };

/** The documents to attach to: the languages and file patterns the server serves. */
export function documentSelector(languageIds: unknown, filePatterns: unknown): DocumentFilter[] {
  const languages = stringList(languageIds) ?? DEFAULT_LANGUAGE_IDS;
  const patterns = stringList(filePatterns) ?? DEFAULT_FILE_PATTERNS;
  return [
    ...languages.map((language) => ({ language })),
    // The server matches file names; VS Code matches paths.
    ...patterns.map((pattern) => ({ pattern: pattern.includes("/") ? pattern : `**/${pattern}` })),
  ];
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** Why the setting was not used, when it was not. */
  problem?: string;
}

/** The server's command line from the serverCommand setting, or the default and why. */
export function serverCommand(value: unknown): ServerCommand {
  const words = stringList(value);
  if (words !== undefined && words.length > 0 && words[0].trim() !== "") {
    return { command: words[0], args: words.slice(1) };
  }
  const [command, ...args] = DEFAULT_SERVER_COMMAND;
  const problem =
    value === undefined
      ? undefined
      : `${SECTION}.serverCommand must be a non-empty list of strings; using "${command}"`;
  return { command, args, problem };
}

/** The expansions in a promptAutocomplete.expand answer (a list of strings), best first. */
export function expansionChoices(result: unknown): string[] {
  if (!Array.isArray(result)) {
    return [];
  }
  return result.filter((item): item is string => typeof item === "string" && item.trim() !== "");
}

function stringList(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    return undefined;
  }
  return value;
}
