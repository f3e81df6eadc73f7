// The palette commands: each fills in its arguments from the editor, asks the server through
// workspace/executeCommand, and opens the result.

import * as vscode from 'vscode';
import { ExecuteCommandRequest } from 'vscode-languageclient/node';

import { ClientCommands, ServerCommands } from './constants';
import { errorMessage } from './log';
import { ServerManager } from './server';

type Args = Record<string, unknown>;

export function registerCommands(
    context: vscode.ExtensionContext,
    manager: ServerManager,
    log: vscode.LogOutputChannel,
): void {
    const register = (id: string, handler: (...args: unknown[]) => Promise<unknown>): void => {
        context.subscriptions.push(
            vscode.commands.registerCommand(id, async (...args: unknown[]) => {
                try {
                    return await handler(...args);
                } catch (error) {
                    log.error(`${id}: ${errorMessage(error)}`);
                    void showError(`${id} failed: ${errorMessage(error)}`, log);
                    return undefined;
                }
            }),
        );
    };
    const execute = async (command: string, args: Args | undefined): Promise<unknown> => {
        const client = manager.running;
        if (client === undefined) {
            throw new Error('the language server is not running (run "klp-lsp: Restart Server")');
        }
        log.info(`executeCommand ${command} ${JSON.stringify(args ?? {})}`);
        return client.sendRequest(ExecuteCommandRequest.type, {
            command,
            arguments: args === undefined ? [] : [args],
        });
    };

    register(ClientCommands.restart, () => manager.restart());
    register(ClientCommands.showLogs, () => {
        log.show();
        return Promise.resolve();
    });
    register(ServerCommands.reindex, () => execute(ServerCommands.reindex, undefined));
    register(ServerCommands.showFunctionReport, async (arg?: unknown) => {
        const args = isArgs(arg) ? arg : await functionReportArgs();
        if (args === undefined) {
            return undefined;
        }
        await openMarkdown(textOf(await execute(ServerCommands.showFunctionReport, args)));
        return undefined;
    });
    register(ServerCommands.showReplaceSet, async (arg?: unknown) => {
        const args = isArgs(arg) ? arg : patchArgs();
        await openMarkdown(textOf(await execute(ServerCommands.showReplaceSet, args)));
        return undefined;
    });
    register(ServerCommands.generateModule, async (arg?: unknown) => {
        // The server asks the user to confirm (window/showMessageRequest) before it writes.
        const args = isArgs(arg) ? arg : patchArgs();
        const result = await execute(ServerCommands.generateModule, args);
        const written = isArgs(result) && result['written'] === true;
        const doc = await vscode.workspace.openTextDocument({ language: 'plaintext', content: textOf(result) });
        await vscode.window.showTextDocument(doc, { preview: false });
        if (written) {
            void vscode.window.showInformationMessage(`klp-lsp: livepatch module written to ${String(result['outdir'])}`);
        }
        return undefined;
    });
    register(ServerCommands.generateSkeleton, async (arg?: unknown) => {
        const args = isArgs(arg) ? arg : patchArgs();
        const content = textOf(await execute(ServerCommands.generateSkeleton, args));
        const doc = await vscode.workspace.openTextDocument({ language: 'c', content });
        await vscode.window.showTextDocument(doc, { preview: false });
        return undefined;
    });
    register(ServerCommands.verifyModule, async (arg?: unknown) => {
        const args = isArgs(arg) ? arg : await moduleArgs(arg);
        if (args === undefined) {
            return undefined;
        }
        await openMarkdown(textOf(await execute(ServerCommands.verifyModule, args)));
        return undefined;
    });
}

/** The `.ko` clicked in the explorer, else one picked in a file dialog. */
async function moduleArgs(arg?: unknown): Promise<Args | undefined> {
    if (arg instanceof vscode.Uri) {
        return { uri: arg.toString() };
    }
    const picked = await vscode.window.showOpenDialog({
        title: 'klp-lsp: Verify Livepatch Module',
        canSelectMany: false,
        filters: { 'Kernel modules': ['ko'] },
    });
    const first = picked?.[0];
    return first === undefined ? undefined : { uri: first.toString() };
}

function isArgs(value: unknown): value is Args {
    return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof vscode.Uri);
}

/** The function under the cursor of a C or patch editor, else a name typed by the user. */
async function functionReportArgs(): Promise<Args | undefined> {
    const editor = vscode.window.activeTextEditor;
    if (editor !== undefined && isKlpDocument(editor.document)) {
        const pos = editor.selection.active;
        return {
            uri: editor.document.uri.toString(),
            position: { line: pos.line, character: pos.character },
        };
    }
    const name = await vscode.window.showInputBox({
        title: 'klp-lsp: Show Function Report',
        prompt: 'Function name (as in the kernel source, e.g. vfs_read)',
        validateInput: (v) => (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(v.trim()) ? undefined : 'Not a C function name'),
    });
    return name === undefined ? undefined : { name: name.trim() };
}

/** The patch in the active editor. */
function patchArgs(): Args {
    const editor = vscode.window.activeTextEditor;
    if (editor === undefined || !isPatchDocument(editor.document)) {
        throw new Error('open a .patch or .diff file first');
    }
    return { uri: editor.document.uri.toString() };
}

function isPatchDocument(doc: vscode.TextDocument): boolean {
    return doc.languageId === 'diff' || /\.(patch|diff)$/.test(doc.uri.path);
}

function isKlpDocument(doc: vscode.TextDocument): boolean {
    return doc.languageId === 'c' || isPatchDocument(doc);
}

/** The text of a command result: a string, or an object with `content` or `markdown`. */
function textOf(result: unknown): string {
    if (typeof result === 'string') {
        return result;
    }
    if (typeof result === 'object' && result !== null) {
        const r = result as Record<string, unknown>;
        for (const key of ['content', 'markdown', 'value']) {
            const v = r[key];
            if (typeof v === 'string') {
                return v;
            }
        }
    }
    throw new Error(`unexpected result from the server: ${JSON.stringify(result)}`);
}

/** Show a Markdown report in the preview beside the editor, else as an untitled document. */
async function openMarkdown(content: string): Promise<void> {
    const doc = await vscode.workspace.openTextDocument({ language: 'markdown', content });
    try {
        await vscode.commands.executeCommand('markdown.showPreviewToSide', doc.uri);
    } catch {
        // Without the built-in Markdown extension the plain document is the report.
        await vscode.window.showTextDocument(doc, { preview: false, viewColumn: vscode.ViewColumn.Beside });
    }
}

async function showError(message: string, log: vscode.LogOutputChannel): Promise<void> {
    const choice = await vscode.window.showErrorMessage(`klp-lsp: ${message}`, 'Show Logs');
    if (choice === 'Show Logs') {
        log.show();
    }
}
