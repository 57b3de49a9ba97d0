import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import {
  DEFAULT_LANGUAGE_IDS,
  documentSelector,
  expansionChoices,
  explicitSettings,
  EXTENSION_KEYS,
  SECTION,
  SERVER_KEYS,
  serverCommand,
} from "../settings";

const manifest = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const contributed: Record<string, { default: unknown }> =
  manifest.contributes.configuration.properties;

test("package.json contributes every server setting and the extension's own, nothing else", () => {
  const keys = Object.keys(contributed).map((name) => name.replace(`${SECTION}.`, ""));
  assert.deepEqual(keys.sort(), [...SERVER_KEYS, ...EXTENSION_KEYS].sort());
});

test("the contributed language ids are the ones attached to by default", () => {
  assert.deepEqual(contributed[`${SECTION}.languageIds`].default, DEFAULT_LANGUAGE_IDS);
});

test("only settings the user set are sent, the most specific scope winning", () => {
  const scopes: Record<string, object> = {
    maxItems: { globalValue: 5, workspaceValue: 7 },
    safeMode: { globalValue: false },
    threads: {},
    serverCommand: { globalValue: ["python", "-m", "server"] },
  };
  assert.deepEqual(explicitSettings((key) => scopes[key]), { maxItems: 7, safeMode: false });
});

test("the selector has the languages and the file patterns as paths", () => {
  assert.deepEqual(documentSelector(["plaintext"], ["*.prompt", "prompts/*.txt"]), [
    { language: "plaintext" },
    { pattern: "**/*.prompt" },
    { pattern: "prompts/*.txt" },
  ]);
  assert.equal(documentSelector("plaintext", 3).length, DEFAULT_LANGUAGE_IDS.length + 1);
});

test("a bad server command falls back to prompt-ls and says why", () => {
  assert.deepEqual(serverCommand(["python", "-m", "server"]), {
    command: "python",
    args: ["-m", "server"],
  });
  const unset = serverCommand(undefined);
  assert.deepEqual(unset, { command: "prompt-ls", args: [], problem: undefined });
  for (const bad of [[], [""], "prompt-ls", [1]]) {
    const parsed = serverCommand(bad);
    assert.equal(parsed.command, "prompt-ls");
    assert.match(parsed.problem ?? "", /serverCommand must be a non-empty list of strings/);
  }
});

test("expansion answers keep their non-empty strings in order", () => {
  assert.deepEqual(expansionChoices(["a b", "", 3, "c"]), ["a b", "c"]);
  assert.deepEqual(expansionChoices(null), []);
});
