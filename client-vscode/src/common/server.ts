// Starts, stops and restarts the language client; owns the one running client.

import * as vscode from 'vscode';
import {
    CloseAction,
    DynamicFeature,
    ErrorAction,
    ErrorHandler,
    ExecuteCommandOptions,
    ExecuteCommandRequest,
    LanguageClient,
    LanguageClientOptions,
    RegistrationData,
    RevealOutputChannelOn,
    ServerOptions,
    State,
} from 'vscode-languageclient/node';

import { INDEX_STATE_NOTIFICATION, SECTION, SERVER_ID, SERVER_NAME, ServerCommands } from './constants';
import { parseIndexState } from './indexState';
import { errorMessage } from './log';
import { describeServerCommand, findOnPath, resolveServerCommand, ServerCommand } from './serverCommand';
import { getLaunchSettings, getServerSettings } from './settings';
import { SingleFlight } from './singleFlight';
import { IndexStatusItem } from './status';
import { TraceChannel } from './trace';

/** C sources and patches; VS Code's built-in `diff` language already covers *.patch and *.diff. */
export const DOCUMENT_SELECTOR = [
    { scheme: 'file', language: 'c' },
    { language: 'diff' },
    { scheme: 'file', pattern: '**/*.{patch,diff}' },
];

const MAX_CRASHES = 3;
const CRASH_WINDOW_MS = 3 * 60 * 1000;

const OWN_COMMANDS: ReadonlySet<string> = new Set(Object.values(ServerCommands));

export class ServerManager implements vscode.Disposable {
    private client: LanguageClient | undefined;
    private readonly gate = new SingleFlight();
    private indexStateSeen = false;
    private readonly trace: TraceChannel;

    constructor(
        private readonly log: vscode.LogOutputChannel,
        private readonly status: IndexStatusItem,
    ) {
        this.trace = new TraceChannel(log);
    }

    /** The running client, or undefined while none is up. */
    get running(): LanguageClient | undefined {
        return this.client?.isRunning() === true ? this.client : undefined;
    }

    /** Stop any running server and start a new one; a call while one is in progress joins it. */
    restart(): Promise<void> {
        if (this.gate.busy) {
            this.log.info('A restart is already in progress; not starting another');
        }
        return this.gate.run(() => this.doRestart());
    }

    async stop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (client !== undefined) {
            try {
                await client.dispose(2000);
            } catch (error) {
                this.log.warn(`Stopping the server: ${errorMessage(error)}`);
            }
        }
    }

    dispose(): void {
        void this.stop();
        this.trace.dispose();
    }

    private async doRestart(): Promise<void> {
        await this.stop();
        let cmd: ServerCommand;
        try {
            const launch = getLaunchSettings();
            cmd = resolveServerCommand({ configured: launch.command, python: launch.python, findExecutable: findOnPath });
        } catch (error) {
            this.reportStartFailure(errorMessage(error));
            return;
        }
        this.log.info(`Starting the server (${cmd.source}): ${describeServerCommand(cmd)}`);
        this.status.showText('$(sync~spin) klp-lsp: starting', describeServerCommand(cmd));
        const client = this.createClient(cmd);
        this.client = client;
        this.setIndexStateSeen(false);
        try {
            await client.start();
        } catch (error) {
            this.client = undefined;
            void client.dispose(2000).catch(() => undefined);
            const hint =
                cmd.source === 'python'
                    ? ` Is klp-lsp installed for ${cmd.command} (pip install klp-lsp)? Or set klp-lsp.server.command.`
                    : '';
            this.reportStartFailure(`${describeServerCommand(cmd)}: ${errorMessage(error)}.${hint}`);
            return;
        }
        // Until the server's first klp-lsp/indexState (which may come before start() resolves),
        // say that it runs.
        if (!this.hasIndexState()) {
            this.status.showText('$(check) klp-lsp: started', 'The server runs; no index state yet');
        }
        const info = client.initializeResult?.serverInfo;
        this.log.info(`Server started: ${info?.name ?? SERVER_NAME} ${info?.version ?? ''}`.trimEnd());
    }

    private createClient(cmd: ServerCommand): LanguageClient {
        const workspaceFolder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        const serverOptions: ServerOptions = {
            command: cmd.command,
            args: [...cmd.args],
            options: workspaceFolder === undefined ? {} : { cwd: workspaceFolder },
        };
        const clientOptions: LanguageClientOptions = {
            documentSelector: DOCUMENT_SELECTOR,
            outputChannel: this.log,
            traceOutputChannel: this.trace,
            revealOutputChannelOn: RevealOutputChannelOn.Never,
            initializationOptions: getServerSettings(),
            // workspace/configuration is answered by the client's configuration feature (pull).
            // The push below also sends didChangeConfiguration with the section whenever a
            // klp-lsp setting changes, which is how a pygls server learns that it should pull again.
            // eslint-disable-next-line @typescript-eslint/no-deprecated -- the server relies on the notification
            synchronize: { configurationSection: SECTION },
            // A failed start is reported once, by reportStartFailure, not by the client as well.
            initializationFailedHandler: () => false,
            errorHandler: this.errorHandler(() => client),
        };
        const client = new LanguageClient(SERVER_ID, SERVER_NAME, serverOptions, clientOptions);
        keepPaletteCommands(client);
        client.onNotification(INDEX_STATE_NOTIFICATION, (params: unknown) => {
            const state = parseIndexState(params);
            if (state === undefined) {
                this.log.warn(`Ignoring malformed ${INDEX_STATE_NOTIFICATION}: ${JSON.stringify(params)}`);
                return;
            }
            if (this.client === client) {
                this.setIndexStateSeen(true);
                this.status.update(state);
            }
        });
        client.onDidChangeState((event) => {
            if (event.newState === State.Stopped && this.client === client) {
                this.status.showText('$(error) klp-lsp: stopped', 'The language server is not running', true);
            }
        });
        return client;
    }

    /** Log the failure and offer the log; does not wait for the user, so restart stays free. */
    // Accessors, not field reads: the notification handler sets the flag while doRestart awaits.
    private hasIndexState(): boolean {
        return this.indexStateSeen;
    }

    private setIndexStateSeen(seen: boolean): void {
        this.indexStateSeen = seen;
    }

    /**
     * A server that dies before it answered `initialize` is a start failure (reported by
     * doRestart); one that dies later is restarted up to MAX_CRASHES times in CRASH_WINDOW_MS,
     * then reported with the log and a restart button.
     */
    private errorHandler(current: () => LanguageClient): ErrorHandler {
        const crashes: number[] = [];
        return {
            error: () => ({ action: ErrorAction.Continue, handled: true }),
            closed: () => {
                if (current().initializeResult === undefined) {
                    return { action: CloseAction.DoNotRestart, handled: true };
                }
                const now = Date.now();
                crashes.push(now);
                while (crashes.length > 0 && (crashes[0] ?? now) < now - CRASH_WINDOW_MS) {
                    crashes.shift();
                }
                if (crashes.length <= MAX_CRASHES) {
                    this.log.warn(`The server exited; restarting it (${crashes.length} of ${MAX_CRASHES})`);
                    return { action: CloseAction.Restart, handled: true };
                }
                this.log.error(`The server exited ${crashes.length} times in ${CRASH_WINDOW_MS / 60000} minutes`);
                void vscode.window
                    .showErrorMessage('klp-lsp: the language server keeps exiting.', 'Show Logs', 'Restart')
                    .then((choice) => {
                        if (choice === 'Show Logs') {
                            this.log.show();
                        } else if (choice === 'Restart') {
                            void this.restart();
                        }
                    });
                return { action: CloseAction.DoNotRestart, handled: true };
            },
        };
    }

    private reportStartFailure(message: string): void {
        this.log.error(`The language server could not start: ${message}`);
        this.status.showText('$(error) klp-lsp: not running', message, true);
        void vscode.window
            .showErrorMessage(`klp-lsp: the language server could not start. ${message}`, 'Show Logs')
            .then((choice) => {
                if (choice === 'Show Logs') {
                    this.log.show();
                }
            });
    }
}

/**
 * The palette commands with the server's command ids are registered by the extension itself
 * (they fill in arguments and open the result). The client's executeCommand feature would
 * register the same ids when the server advertises them, which VS Code rejects; drop ours from
 * what it registers and keep any other server command.
 */
function keepPaletteCommands(client: LanguageClient): void {
    const feature: DynamicFeature<ExecuteCommandOptions> = client.getFeature(ExecuteCommandRequest.method);
    const register = feature.register.bind(feature);
    feature.register = (data: RegistrationData<ExecuteCommandOptions>): void => {
        const commands = data.registerOptions.commands.filter((c) => !OWN_COMMANDS.has(c));
        register({ ...data, registerOptions: { ...data.registerOptions, commands } });
    };
}
