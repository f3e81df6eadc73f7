// How the extension finds the language server to start. Pure logic with no `vscode` import, so
// `node --test` checks it without an editor.

import * as fs from 'node:fs';
import * as path from 'node:path';

/** The program and arguments that start `klp-lsp serve`, and which rule chose them. */
export interface ServerCommand {
    readonly command: string;
    readonly args: readonly string[];
    readonly source: 'setting' | 'path' | 'python';
}

export interface ServerCommandInputs {
    /** `klp-lsp.server.command`: the full argv; empty means "find it". */
    readonly configured: readonly string[];
    /** `klp-lsp.server.python`: interpreter for the `-m klp_lsp` fallback. */
    readonly python: string;
    /** Returns the absolute path of an executable on PATH, or undefined. */
    readonly findExecutable: (name: string) => string | undefined;
}

/** Raised when the settings cannot name a server command; the message is shown to the user. */
export class ServerCommandError extends Error {
    override name = 'ServerCommandError';
}

/**
 * Pick the server command: the configured one, else `klp-lsp serve` from PATH, else
 * `<python> -m klp_lsp serve`.
 */
export function resolveServerCommand(inputs: ServerCommandInputs): ServerCommand {
    if (inputs.configured.length > 0) {
        const [command, ...args] = inputs.configured;
        if (command === undefined || command.trim() === '') {
            throw new ServerCommandError(
                'klp-lsp.server.command: the first element must name the program to run',
            );
        }
        return { command, args, source: 'setting' };
    }
    const onPath = inputs.findExecutable('klp-lsp');
    if (onPath !== undefined) {
        return { command: onPath, args: ['serve'], source: 'path' };
    }
    const python = inputs.python.trim();
    if (python === '') {
        throw new ServerCommandError(
            'klp-lsp.server.python is empty and no klp-lsp was found on PATH',
        );
    }
    return { command: python, args: ['-m', 'klp_lsp', 'serve'], source: 'python' };
}

/** Find `name` as an executable regular file in the directories of `searchPath`. */
export function findOnPath(
    name: string,
    searchPath: string | undefined = process.env['PATH'],
): string | undefined {
    for (const dir of (searchPath ?? '').split(path.delimiter)) {
        // An empty PATH entry means the current directory; a server should never come from there.
        if (dir === '') {
            continue;
        }
        const candidate = path.join(dir, name);
        try {
            fs.accessSync(candidate, fs.constants.X_OK);
            if (fs.statSync(candidate).isFile()) {
                return candidate;
            }
        } catch {
            // Not here or not executable: keep looking.
        }
    }
    return undefined;
}

/** Render a command for logs and error messages. */
export function describeServerCommand(cmd: ServerCommand): string {
    return [cmd.command, ...cmd.args].map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(' ');
}
