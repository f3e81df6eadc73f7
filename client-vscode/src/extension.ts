// Entry point: wires the log, status bar, commands and server manager together.

import * as vscode from 'vscode';

import { registerCommands } from './common/commands';
import { createLogChannel } from './common/log';
import { ServerManager } from './common/server';
import { needsRestart } from './common/settings';
import { IndexStatusItem } from './common/status';

let manager: ServerManager | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const log = createLogChannel();
    const status = new IndexStatusItem();
    manager = new ServerManager(log, status);
    const current = manager;
    context.subscriptions.push(log, status, manager);
    registerCommands(context, current, log);
    context.subscriptions.push(
        vscode.workspace.onDidChangeConfiguration((event) => {
            if (needsRestart(event)) {
                log.info('klp-lsp.server.* changed: restarting the server');
                void current.restart();
            }
        }),
    );
    await current.restart();
}

export async function deactivate(): Promise<void> {
    await manager?.stop();
    manager = undefined;
}
