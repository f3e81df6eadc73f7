// The `klp-lsp/indexState` notification and how the status bar renders it. Pure, testable.

export type IndexStateName = 'none' | 'building' | 'ready' | 'error';

export interface IndexState {
    readonly state: IndexStateName;
    readonly percent: number | null;
    readonly object: string | null;
    readonly message: string | null;
}

export interface StatusView {
    readonly text: string;
    readonly tooltip: string;
    readonly isError: boolean;
}

const STATES: readonly string[] = ['none', 'building', 'ready', 'error'];

/** Check the shape of a notification's params; returns undefined for anything malformed. */
export function parseIndexState(params: unknown): IndexState | undefined {
    if (typeof params !== 'object' || params === null) {
        return undefined;
    }
    const p = params as Record<string, unknown>;
    if (typeof p['state'] !== 'string' || !STATES.includes(p['state'])) {
        return undefined;
    }
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    return {
        state: p['state'] as IndexStateName,
        percent: num(p['percent']),
        object: str(p['object']),
        message: str(p['message']),
    };
}

/** Text and tooltip of the status bar item for a state ("klp-lsp: indexing vmlinux 40%"). */
export function renderIndexState(s: IndexState): StatusView {
    const detail = s.message ?? '';
    switch (s.state) {
        case 'building': {
            const parts = ['klp-lsp: indexing'];
            if (s.object !== null) {
                parts.push(s.object);
            }
            if (s.percent !== null) {
                parts.push(`${Math.round(s.percent)}%`);
            }
            return { text: `$(sync~spin) ${parts.join(' ')}`, tooltip: detail || 'Building the index', isError: false };
        }
        case 'ready':
            return { text: '$(check) klp-lsp: ready', tooltip: detail || 'Index ready', isError: false };
        case 'error':
            return { text: '$(error) klp-lsp: error', tooltip: detail || 'Indexing failed', isError: true };
        case 'none':
            return { text: 'klp-lsp: no index', tooltip: detail || 'No index yet', isError: false };
    }
}
