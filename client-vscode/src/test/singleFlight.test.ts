// The restart gate: a second restart while one runs must not start a second server.

import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SingleFlight } from '../common/singleFlight';

describe('SingleFlight', () => {
    it('runs one action at a time and shares it with concurrent callers', async () => {
        const gate = new SingleFlight();
        let starts = 0;
        let release: () => void = () => undefined;
        const action = (): Promise<void> => {
            starts += 1;
            return new Promise<void>((resolve) => {
                release = resolve;
            });
        };
        const first = gate.run(action);
        const second = gate.run(action);
        assert.equal(first, second);
        assert.equal(gate.busy, true);
        release();
        await Promise.all([first, second]);
        assert.equal(starts, 1);
        assert.equal(gate.busy, false);
        await gate.run(() => {
            starts += 1;
            return Promise.resolve();
        });
        assert.equal(starts, 2);
    });

    it('frees the gate after a failure', async () => {
        const gate = new SingleFlight();
        await assert.rejects(gate.run(() => Promise.reject(new Error('boom'))), /boom/);
        assert.equal(gate.busy, false);
    });
});
