// Names shared by the extension's modules: one place, so package.json and the code agree.

export const SERVER_ID = 'klp-lsp';
export const SERVER_NAME = 'klp-lsp';
/** Configuration section; `settings.py` on the server side uses the same name. */
export const SECTION = 'klp-lsp';

/** Server settings sent as initializationOptions; mirrors `klp_lsp.settings.SETTINGS`. */
export const SERVER_SETTING_NAMES = [
    'binaries',
    'kernelRelease',
    'sourceRoot',
    'indexDir',
    'compileCheck',
    'buildTree',
    'severityOverrides',
    'inlayHints',
] as const;

/** Commands the server executes through workspace/executeCommand. */
export const ServerCommands = {
    reindex: 'klp-lsp.reindex',
    showFunctionReport: 'klp-lsp.showFunctionReport',
    generateModule: 'klp-lsp.generateModule',
    generateSkeleton: 'klp-lsp.generateSkeleton',
    showReplaceSet: 'klp-lsp.showReplaceSet',
    verifyModule: 'klp-lsp.verifyModule',
} as const;

/** Commands only the extension implements. */
export const ClientCommands = {
    restart: 'klp-lsp.restart',
    showLogs: 'klp-lsp.showLogs',
} as const;

/** Custom notification with the state of the index. */
export const INDEX_STATE_NOTIFICATION = 'klp-lsp/indexState';
