// Reads the extension's settings: what the server gets, and how to start it.

import * as vscode from 'vscode';

import { SECTION, SERVER_SETTING_NAMES } from './constants';

export type ServerSettings = Record<(typeof SERVER_SETTING_NAMES)[number], unknown>;

/** The server's settings, sent as initializationOptions (defaults come from package.json). */
export function getServerSettings(): ServerSettings {
    const config = vscode.workspace.getConfiguration(SECTION);
    const out: Partial<ServerSettings> = {};
    for (const name of SERVER_SETTING_NAMES) {
        out[name] = config.get<unknown>(name);
    }
    return out as ServerSettings;
}

export interface LaunchSettings {
    readonly command: readonly string[];
    readonly python: string;
}

/** `klp-lsp.server.command` and `klp-lsp.server.python`. */
export function getLaunchSettings(): LaunchSettings {
    const config = vscode.workspace.getConfiguration(SECTION);
    const command = config.get<unknown>('server.command');
    const python = config.get<unknown>('server.python');
    return {
        command: Array.isArray(command) ? command.filter((x): x is string => typeof x === 'string') : [],
        python: typeof python === 'string' ? python : 'python3',
    };
}

/** True when a configuration change needs a new server process. */
export function needsRestart(event: vscode.ConfigurationChangeEvent): boolean {
    return event.affectsConfiguration(`${SECTION}.server`);
}
