/**
 * Prompt Autocompletion for VS Code: prompt-ls through vscode-languageclient. Completions and
 * ghost text (inline completion) come from the client's built-in features; this file adds the
 * settings, the "Expand the current line" command and restarts on server-shaping settings.
 */
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  TransportKind,
} from "vscode-languageclient/node";

import {
  documentSelector,
  EXPAND_COMMAND,
  expansionChoices,
  explicitSettings,
  SECTION,
  serverCommand,
} from "./settings";

const EXPANSIONS = 4;
// Settings that change how the server is started or which documents it gets.
const RESTART_KEYS = ["serverCommand", "languageIds", "filePatterns"];

let client: LanguageClient | undefined;

function configuration(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function userSettings(): Record<string, unknown> {
  const config = configuration();
  return explicitSettings((key) => config.inspect(key));
}

function createClient(): LanguageClient {
  const config = configuration();
  const server = serverCommand(config.get("serverCommand"));
  if (server.problem) {
    void vscode.window.showWarningMessage(server.problem);
  }
  const serverOptions: ServerOptions = {
    command: server.command,
    args: server.args,
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: documentSelector(config.get("languageIds"), config.get("filePatterns")),
    initializationOptions: userSettings(),
    synchronize: { configurationSection: SECTION },
    middleware: {
      workspace: {
        // Answer with the user's server settings only: not the extension's own keys, and not
        // defaults, so that the server's (some of which depend on the client) apply.
        configuration: (params) =>
          params.items.map((item) => (item.section === SECTION ? userSettings() : null)),
      },
    },
  };
  const created = new LanguageClient(
    "promptAutocomplete",
    "Prompt Autocompletion",
    serverOptions,
    clientOptions,
  );
  // Inline completion (ghost text) is a proposed feature in vscode-languageclient 9.
  created.registerProposedFeatures();
  return created;
}

async function restart(): Promise<void> {
  await client?.stop();
  client = createClient();
  await client.start();
}

async function expandLine(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined || client === undefined) {
    return;
  }
  const document = editor.document;
  const line = document.lineAt(editor.selection.active.line);
  const version = document.version;
  let result: unknown;
  try {
    result = await client.sendRequest(ExecuteCommandRequest.type, {
      command: EXPAND_COMMAND,
      arguments: [line.text, EXPANSIONS],
    });
  } catch (error) {
    void vscode.window.showErrorMessage(`Prompt expansion failed: ${String(error)}`);
    return;
  }
  const choices = expansionChoices(result);
  if (choices.length === 0) {
    void vscode.window.showInformationMessage("No expansion (is the model still loading?)");
    return;
  }
  const picked = await vscode.window.showQuickPick(choices, {
    placeHolder: "Expand the prompt to",
  });
  if (picked === undefined) {
    return;
  }
  if (document.version !== version) {
    void vscode.window.showWarningMessage("The document changed; the expansion was not inserted.");
    return;
  }
  await editor.edit((edit) => edit.replace(line.range, picked));
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.commands.registerCommand("promptAutocomplete.expandLine", expandLine),
    vscode.commands.registerCommand("promptAutocomplete.restartServer", restart),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (RESTART_KEYS.some((key) => event.affectsConfiguration(`${SECTION}.${key}`))) {
        void restart();
      }
    }),
  );
  client = createClient();
  await client.start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
