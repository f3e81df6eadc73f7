// One log output channel for the extension and the language client (messages and trace).

import * as vscode from 'vscode';

import { SERVER_NAME } from './constants';

export function createLogChannel(): vscode.LogOutputChannel {
    return vscode.window.createOutputChannel(SERVER_NAME, { log: true });
}

/** A one-line description of any thrown value. */
export function errorMessage(error: unknown): string {
    if (error instanceof Error) {
        return error.message;
    }
    return String(error);
}
