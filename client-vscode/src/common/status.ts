// The status bar item that shows the state of the server's index.

import * as vscode from 'vscode';

import { ClientCommands } from './constants';
import { IndexState, renderIndexState } from './indexState';

export class IndexStatusItem implements vscode.Disposable {
    private readonly item: vscode.StatusBarItem;

    constructor() {
        this.item = vscode.window.createStatusBarItem('klp-lsp.indexState', vscode.StatusBarAlignment.Left, 10);
        this.item.name = 'klp-lsp index';
        this.item.command = ClientCommands.showLogs;
        this.showText('$(sync~spin) klp-lsp: starting', 'Starting the language server');
    }

    update(state: IndexState): void {
        const view = renderIndexState(state);
        this.showText(view.text, view.tooltip, view.isError);
    }

    showText(text: string, tooltip: string, isError = false): void {
        this.item.text = text;
        this.item.tooltip = `${tooltip}\n(click to show the log)`;
        this.item.backgroundColor = isError ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
        this.item.show();
    }

    dispose(): void {
        this.item.dispose();
    }
}
