// Start-up logic: which command starts the server. Runs with `node --test`, no VS Code needed.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';

import { findOnPath, resolveServerCommand, ServerCommandError } from '../common/serverCommand';

const nowhere = (): undefined => undefined;

describe('resolveServerCommand', () => {
    it('uses the configured command line as is', () => {
        const cmd = resolveServerCommand({
            configured: ['/opt/venv/bin/klp-lsp', 'serve', '--log-level', 'debug'],
            python: 'python3',
            findExecutable: () => '/usr/bin/klp-lsp',
        });
        assert.deepEqual(cmd, {
            command: '/opt/venv/bin/klp-lsp',
            args: ['serve', '--log-level', 'debug'],
            source: 'setting',
        });
    });

    it('rejects a configured command whose program is blank', () => {
        assert.throws(
            () => resolveServerCommand({ configured: [' ', 'serve'], python: 'python3', findExecutable: nowhere }),
            ServerCommandError,
        );
    });

    it('prefers klp-lsp on PATH when nothing is configured', () => {
        const asked: string[] = [];
        const cmd = resolveServerCommand({
            configured: [],
            python: 'python3',
            findExecutable: (name) => {
                asked.push(name);
                return `/usr/local/bin/${name}`;
            },
        });
        assert.deepEqual(asked, ['klp-lsp']);
        assert.deepEqual(cmd, { command: '/usr/local/bin/klp-lsp', args: ['serve'], source: 'path' });
    });

    it('falls back to the configured python -m klp_lsp', () => {
        const cmd = resolveServerCommand({ configured: [], python: ' /usr/bin/python3.11 ', findExecutable: nowhere });
        assert.deepEqual(cmd, { command: '/usr/bin/python3.11', args: ['-m', 'klp_lsp', 'serve'], source: 'python' });
    });

    it('fails clearly with neither klp-lsp on PATH nor a python', () => {
        assert.throws(
            () => resolveServerCommand({ configured: [], python: '', findExecutable: nowhere }),
            /klp-lsp.server.python is empty/,
        );
    });
});

describe('findOnPath', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klp-lsp-path-'));
    const plain = path.join(tmp, 'plain');
    const exec = path.join(tmp, 'exec');
    fs.mkdirSync(plain);
    fs.mkdirSync(exec);
    fs.writeFileSync(path.join(plain, 'klp-lsp'), '#!/bin/sh\n', { mode: 0o644 });
    fs.writeFileSync(path.join(exec, 'klp-lsp'), '#!/bin/sh\n', { mode: 0o755 });
    fs.mkdirSync(path.join(exec, 'a-directory'), { mode: 0o755 });

    it('finds an executable file and skips non-executable ones', () => {
        const searchPath = [path.join(tmp, 'missing'), plain, exec].join(path.delimiter);
        assert.equal(findOnPath('klp-lsp', searchPath), path.join(exec, 'klp-lsp'));
    });

    it('ignores directories and empty PATH entries', () => {
        assert.equal(findOnPath('a-directory', exec), undefined);
        assert.equal(findOnPath('klp-lsp', `${path.delimiter}${plain}`), undefined);
        assert.equal(findOnPath('klp-lsp', undefined), findOnPath('klp-lsp', process.env['PATH']));
    });

    it('returns undefined for an empty PATH', () => {
        assert.equal(findOnPath('klp-lsp', ''), undefined);
    });
});
