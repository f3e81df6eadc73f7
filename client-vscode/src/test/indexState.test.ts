// The status bar text for each `klp-lsp/indexState` notification.

import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseIndexState, renderIndexState } from '../common/indexState';

describe('indexState', () => {
    const check = (params: unknown, text: string | undefined): void => {
        const state = parseIndexState(params);
        assert.equal(state === undefined ? undefined : renderIndexState(state).text, text);
    };

    it('renders each state', () => {
        check({ state: 'building', percent: 40, object: 'vmlinux', message: null }, '$(sync~spin) klp-lsp: indexing vmlinux 40%');
        check({ state: 'building', percent: null, object: null, message: null }, '$(sync~spin) klp-lsp: indexing');
        check({ state: 'ready', percent: 100, object: null, message: null }, '$(check) klp-lsp: ready');
        check({ state: 'error', percent: null, object: null, message: 'vmlinux: no DWARF' }, '$(error) klp-lsp: error');
        check({ state: 'none', percent: null, object: null, message: null }, 'klp-lsp: no index');
    });

    it('puts the error message in the tooltip', () => {
        const state = parseIndexState({ state: 'error', percent: null, object: null, message: 'vmlinux: no DWARF' });
        assert.ok(state);
        const view = renderIndexState(state);
        assert.equal(view.tooltip, 'vmlinux: no DWARF');
        assert.equal(view.isError, true);
    });

    it('rejects malformed params', () => {
        check(null, undefined);
        check({ state: 'done' }, undefined);
        check('ready', undefined);
    });

    it('treats missing optional fields as null', () => {
        assert.deepEqual(parseIndexState({ state: 'ready' }), { state: 'ready', percent: null, object: null, message: null });
    });
});
