// The channel the language client writes its LSP trace to: the klp-lsp log, seen through
// `klp-lsp.trace.server`.

import * as vscode from 'vscode';

import { SECTION } from './constants';

const TRACE_SETTING = `${SECTION}.trace.server`;

/**
 * vscode-languageclient 10+ traces messages only while its trace channel's log level is Trace
 * (`BaseLanguageClient.refreshTrace`) and writes them with `trace()`, so on a log channel at the
 * default Info level `klp-lsp.trace.server` alone would show nothing. This view of the log
 * reports Trace while the setting is not "off" and then writes trace lines at Info level, so the
 * setting works without "Developer: Set Log Level"; with the setting off it is the log itself.
 */
export class TraceChannel implements vscode.LogOutputChannel, vscode.Disposable {
    private readonly changed = new vscode.EventEmitter<vscode.LogLevel>();
    private readonly subscriptions: readonly { dispose(): unknown }[];

    constructor(private readonly log: vscode.LogOutputChannel) {
        this.subscriptions = [
            this.changed,
            log.onDidChangeLogLevel(() => {
                this.changed.fire(this.logLevel);
            }),
            vscode.workspace.onDidChangeConfiguration((event) => {
                if (event.affectsConfiguration(TRACE_SETTING)) {
                    this.changed.fire(this.logLevel);
                }
            }),
        ];
    }

    get name(): string {
        return this.log.name;
    }

    get logLevel(): vscode.LogLevel {
        return this.tracing() ? vscode.LogLevel.Trace : this.log.logLevel;
    }

    get onDidChangeLogLevel(): vscode.Event<vscode.LogLevel> {
        return this.changed.event;
    }

    trace(message: string, ...args: unknown[]): void {
        if (this.tracing()) {
            this.log.info(message, ...args);
        } else {
            this.log.trace(message, ...args);
        }
    }

    debug(message: string, ...args: unknown[]): void {
        this.log.debug(message, ...args);
    }

    info(message: string, ...args: unknown[]): void {
        this.log.info(message, ...args);
    }

    warn(message: string, ...args: unknown[]): void {
        this.log.warn(message, ...args);
    }

    error(error: string | Error, ...args: unknown[]): void {
        this.log.error(error, ...args);
    }

    append(value: string): void {
        this.log.append(value);
    }

    appendLine(value: string): void {
        this.log.appendLine(value);
    }

    replace(value: string): void {
        this.log.replace(value);
    }

    clear(): void {
        this.log.clear();
    }

    show(columnOrPreserveFocus?: vscode.ViewColumn | boolean, preserveFocus?: boolean): void {
        this.log.show(typeof columnOrPreserveFocus === 'boolean' ? columnOrPreserveFocus : preserveFocus);
    }

    hide(): void {
        this.log.hide();
    }

    /** Stops listening; the log channel itself belongs to the extension. */
    dispose(): void {
        for (const d of this.subscriptions) {
            d.dispose();
        }
    }

    private tracing(): boolean {
        const value = vscode.workspace.getConfiguration(SECTION).get<unknown>('trace.server');
        return typeof value === 'string' && value !== 'off';
    }
}
