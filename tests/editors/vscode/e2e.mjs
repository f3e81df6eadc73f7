// Drives a running code-server in headless Chromium: opens the fixture patch, waits for
// klp-lsp's squiggle and the status bar's "ready", hovers a function, opens a C file and waits for
// a code lens, runs the skeleton command; then, for each patch of KLP_E2E_PATCH_CHECKS, checks its
// code lenses, the hover at the start of a diagnostic and its outline. Every wait polls with a
// timeout; screenshots go to KLP_E2E_ARTIFACTS.
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';

const require = createRequire(path.join(process.env.KLP_PLAYWRIGHT_DIR ?? '.', 'package.json'));
const { chromium } = require('playwright-core');

const env = (name) => {
    const value = process.env[name];
    if (!value) {
        throw new Error(`${name} is not set`);
    }
    return value;
};
const URL = env('KLP_E2E_URL');
const WORKSPACE = env('KLP_E2E_WORKSPACE');
const ARTIFACTS = env('KLP_E2E_ARTIFACTS');
const HOVER_WORD = env('KLP_E2E_HOVER_WORD');
const TIMEOUT = Number(process.env.KLP_E2E_TIMEOUT_MS ?? 120000);
// What the hover card must show; by default the hovered name itself.
const HOVER_EXPECT = new RegExp(process.env.KLP_E2E_HOVER_EXPECT ?? `\\b${HOVER_WORD}\\b`);
const relative = (p) => (path.isAbsolute(p) ? path.relative(WORKSPACE, p) : p);
const PATCH = relative(env('KLP_E2E_PATCH'));
const CFILE = relative(env('KLP_E2E_CFILE'));
// Optional: text the Problems panel must show for the patch, and text the skeleton must contain.
const SQUIGGLE_EXPECT = process.env.KLP_E2E_SQUIGGLE_EXPECT ?? '';
const SKELETON_EXPECT = process.env.KLP_E2E_SKELETON_EXPECT ?? '';
// Optional: JSON list of {patch, lenses: [texts], diagnosticLine, hover: [texts], symbols: [names],
// screenshot}: each patch must show those lenses (in order), the hover at column 1 of
// diagnosticLine must contain the texts, and Go to Symbol must list the names in order.
const PATCH_CHECKS = JSON.parse(process.env.KLP_E2E_PATCH_CHECKS || '[]');

const results = { checks: [] };
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const note = (name, detail) => {
    results.checks.push({ name, detail, at: elapsed() });
    console.log(`[e2e] ok: ${name} (${elapsed()})${detail ? `: ${detail}` : ''}`);
};

const browser = await chromium.launch({
    executablePath: process.env.KLP_CHROMIUM ?? '/usr/bin/chromium',
    args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-dev-shm-usage',
    ],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 860 } });
const page = await context.newPage();
const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });

let failed = false;
try {
    await page.goto(URL, { waitUntil: 'domcontentloaded' });
    await page.locator('.monaco-workbench').waitFor({ timeout: TIMEOUT });
    await page.locator('.explorer-folders-view, .explorer-viewlet').first().waitFor({ timeout: TIMEOUT });
    note('workbench loaded');

    if (process.env.KLP_E2E_EXPECT_START_FAILURE === '1') {
        await checkStartFailure();
        throw Symbol.for('done');
    }

    await openFile(PATCH);
    const activeEditor = page.locator('.editor-group-container.active .monaco-editor').first();
    const squiggle = activeEditor.locator('.squiggly-error, .squiggly-warning, .squiggly-info, .squiggly-hint');
    await squiggle.first().waitFor({ state: 'attached', timeout: TIMEOUT });
    note('squiggle on the patch', `${await squiggle.count()} decoration(s)`);
    // Diagnostics come once the index is open; the fixture kernel is then indexed whole.
    await waitFor(async () => (await statusText()) === 'klp-lsp: ready', 'the status bar to say klp-lsp: ready');
    note('status bar once diagnostics show', await statusText());
    await shot('1-patch-squiggle');
    if (SQUIGGLE_EXPECT) {
        results.problems = await problems(SQUIGGLE_EXPECT);
        note('Problems panel', results.problems.replace(/\s+/g, ' ').slice(0, 200));
    }

    await revealWord(PATCH, HOVER_WORD);
    const hoverText = await hover(activeEditor, HOVER_WORD);
    if (!HOVER_EXPECT.test(hoverText)) {
        throw new Error(`the hover on ${HOVER_WORD} does not match ${HOVER_EXPECT}: ${hoverText}`);
    }
    note('hover card', hoverText.replace(/\s+/g, ' ').slice(0, 200));
    results.hover = hoverText;
    await shot('2-hover');
    await shot('readme');
    await page.mouse.move(5, 400);
    await page.keyboard.press('Escape');

    results.statusBar = await statusText();
    note('status bar', results.statusBar);

    await runCommand('klp-lsp: Generate Livepatch Skeleton');
    const untitled = page.locator('.tab.active', { hasText: 'Untitled' });
    await untitled.waitFor({ timeout: TIMEOUT });
    const language = page.locator('.statusbar-item[id="status.editor.mode"]');
    await waitFor(async () => (await language.innerText()).trim() === 'C', 'the skeleton editor to be C');
    if (SKELETON_EXPECT) {
        // Only the lines on screen are in the DOM: go to the end, where the klp_patch is.
        await page.keyboard.press('Control+End');
        const lines = page.locator('.editor-group-container.active .monaco-editor .view-lines').first();
        await waitFor(async () => (await lines.innerText()).replace(/\u00a0/g, ' ').includes(SKELETON_EXPECT),
            `"${SKELETON_EXPECT}" in the skeleton`);
    }
    note('skeleton command opened an untitled C editor', SKELETON_EXPECT ? `with "${SKELETON_EXPECT}"` : '');
    await shot('3-skeleton');

    await openFile(CFILE);
    const lens = page.locator('.editor-group-container.active .codelens-decoration');
    await waitFor(async () => (await lens.count()) > 0 && (await lens.first().innerText()).trim() !== '',
        'a code lens on the C file');
    results.codeLens = (await lens.first().innerText()).trim();
    note('code lens on the C file', results.codeLens);
    await shot('4-codelens');

    // The lens runs klp-lsp.showFunctionReport; the report opens as a Markdown preview.
    await lens.first().locator('a').first().click();
    const preview = page.locator('.tab', { hasText: /Preview/ });
    await preview.first().waitFor({ timeout: TIMEOUT });
    // The preview is a webview: an iframe whose active frame holds the rendered Markdown.
    const rendered = page.frameLocator('iframe.webview.ready').last().frameLocator('#active-frame').locator('body');
    await waitFor(async () => (await rendered.innerText({ timeout: 1000 })).trim() !== '', 'the rendered report');
    results.report = (await rendered.innerText()).trim();
    note('code lens opened the function report', results.report.replace(/\s+/g, ' ').slice(0, 200));
    await shot('5-function-report');

    results.patches = {};
    if (PATCH_CHECKS.length > 0) {
        // One column for the patches: their lenses are long.
        await runCommand('View: Single Column Editor Layout');
    }
    for (const check of PATCH_CHECKS) {
        results.patches[check.patch] = await checkPatch(check);
    }
} catch (error) {
    if (error === Symbol.for('done')) {
        // The start-failure scenario ends early on purpose.
    } else {
    failed = true;
    results.error = String(error?.stack ?? error);
    console.error(`[e2e] FAILED after ${elapsed()}: ${error?.message ?? error}`);
    await shot('failure').catch(() => undefined);
    results.statusBar ??= await statusText().catch(() => '');
    }
} finally {
    results.seconds = (Date.now() - started) / 1000;
    fs.writeFileSync(path.join(ARTIFACTS, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    await browser.close();
}
console.log(failed ? '[e2e] 0 passed, 1 failed' : `[e2e] ${results.checks.length} checks passed`);
process.exit(failed ? 1 : 0);

/** A server that cannot start: an error toast with "Show Logs", which opens the log. */
async function checkStartFailure() {
    await openFile(PATCH);
    const toast = page.locator('.notification-toast', { hasText: 'could not start' });
    await toast.first().waitFor({ timeout: TIMEOUT });
    note('start failure reported', (await toast.first().innerText()).replace(/\s+/g, ' ').slice(0, 200));
    await shot('start-failure');
    const output = page.locator('.part.panel .monaco-editor .view-lines', { hasText: 'could not start' });
    // vscode-languageclient raises its own toast at the same moment; the toasts can move while
    // the click lands, so click Show Logs again (while its toast is there) until the log shows.
    let clicks = 0;
    await waitFor(async () => {
        if (await output.first().isVisible()) {
            return true;
        }
        const button = toast.first().getByRole('button', { name: 'Show Logs' });
        if (await button.isVisible()) {
            await button.click({ timeout: 5000 });
            clicks += 1;
        } else if (clicks > 0) {
            // The toast went away without showing the log: the status bar item shows it too.
            await page.locator('.statusbar-item', { hasText: 'klp-lsp' }).first().click({ timeout: 5000 });
            clicks += 1;
        }
        return output.first().isVisible();
    }, 'Show Logs to open the klp-lsp log');
    note('Show Logs opened the klp-lsp log', `${clicks} click(s)`);
    results.statusBar = await statusText();
    note('status bar', results.statusBar);
    await shot('start-failure-log');
}

/** A patch's code lenses, the hover at the start of a diagnostic, and its outline. */
async function checkPatch(check) {
    const seen = {};
    await page.keyboard.press('Escape');
    await openFile(check.patch);
    const editor = page.locator('.editor-group-container.active').first();
    const lenses = editor.locator('.codelens-decoration a, .codelens-decoration span');
    let texts = [];
    await waitFor(async () => {
        // Lenses are drawn for the lines on screen only, and the one above line 1 only when the
        // editor is scrolled right to the top (a lens added later does not scroll it into view):
        // read them at the top, then page by page down to the end.
        await page.keyboard.press('Control+Home');
        const box = await editor.locator('.view-lines').first().boundingBox();
        if (box) {
            await page.mouse.move(box.x + 50, box.y + 50);
            await page.mouse.wheel(0, -5000);
        }
        const found = [];
        for (let screen = 0; screen < 20; screen += 1) {
            for (const t of await lenses.allInnerTexts()) {
                const text = t.replace(/\u00a0/g, ' ').trim();
                if (text && text !== '|' && !found.includes(text)) {
                    found.push(text);
                }
            }
            // Page down until the last line on screen stays the same (the end of the file).
            const numbers = editor.locator('.line-numbers');
            const before = await numbers.last().innerText();
            await page.keyboard.press('PageDown');
            const moved = await numbers.last()
                .evaluate((e, b) => new Promise((resolve) => {
                    const end = Date.now() + 2000;
                    const poll = () => (e.isConnected && e.textContent.trim() === b && Date.now() < end
                        ? requestAnimationFrame(poll) : resolve(!e.isConnected || e.textContent.trim() !== b));
                    poll();
                }), before.trim())
                .catch(() => true);
            if (!moved && (await numbers.last().innerText()) === before) {
                break;
            }
        }
        texts = found;
        return check.lenses.every((expected) => texts.includes(expected));
    }, () => `the code lenses of ${check.patch}: ${JSON.stringify(check.lenses)} (seen ${JSON.stringify(texts)})`);
    await page.keyboard.press('Control+Home');
    const top = await editor.locator('.view-lines').first().boundingBox();
    if (top) {
        await page.mouse.move(top.x + 50, top.y + 50);
        await page.mouse.wheel(0, -5000);
    }
    const order = check.lenses.map((l) => texts.indexOf(l));
    if (order.some((i, k) => k > 0 && i < order[k - 1])) {
        throw new Error(`the lenses of ${check.patch} are out of order: ${JSON.stringify(texts)}`);
    }
    seen.lenses = texts;
    note(`code lenses on ${check.patch}`, texts.join(' | ').slice(0, 200));
    await waitFor(async () => (await statusText()) === 'klp-lsp: ready', 'the status bar to say klp-lsp: ready');
    await shot(check.screenshot);

    seen.hover = await hoverLineStart(editor, check.diagnosticLine);
    for (const expected of check.hover) {
        if (!seen.hover.includes(expected)) {
            throw new Error(`the hover at ${check.patch}:${check.diagnosticLine}:1 lacks "${expected}": ${seen.hover}`);
        }
    }
    note(`hover at the start of ${check.patch}:${check.diagnosticLine}`, seen.hover.replace(/\s+/g, ' ').slice(0, 200));
    await shot(`${check.screenshot}-hover`);
    await page.mouse.move(5, 400);
    await page.keyboard.press('Escape');

    // Go to Symbol in Editor: Quick Open with "@" lists the document symbols, parents first.
    await page.keyboard.press('Control+P');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ timeout: TIMEOUT });
    await input.fill('@');
    const rows = page.locator('.quick-input-list .monaco-list-row .label-name');
    let names = [];
    await waitFor(async () => {
        names = (await rows.allInnerTexts()).map((t) => t.replace(/\u00a0/g, ' ').trim());
        let at = 0;
        for (const name of names) {
            if (name === check.symbols[at]) {
                at += 1;
            }
        }
        return at === check.symbols.length;
    }, `the symbols of ${check.patch}: ${JSON.stringify(check.symbols)}`);
    seen.symbols = names;
    note(`outline of ${check.patch}`, names.join(', ').slice(0, 200));
    await shot(`${check.screenshot}-symbols`);
    await page.keyboard.press('Escape');
    return seen;
}

/** Hover the first column of a (1-based) line of the active editor; return the hover's text. */
async function hoverLineStart(editor, line) {
    await page.keyboard.press('Control+G');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ timeout: TIMEOUT });
    await input.fill(`:${line}`);
    await page.keyboard.press('Enter');
    await input.waitFor({ state: 'hidden', timeout: TIMEOUT });
    // Read the line's place again on every try (late code lenses move the lines).
    const locate = () => editor.evaluate((root, n) => {
        const number = [...root.querySelectorAll('.line-numbers')].find((e) => e.textContent.trim() === String(n));
        const lines = root.querySelector('.view-lines');
        if (!number || !lines) {
            return null;
        }
        const r = number.getBoundingClientRect();
        return { x: lines.getBoundingClientRect().x + 3, y: r.y + r.height / 2 };
    }, line);
    if (!(await locate())) {
        throw new Error(`line ${line} is not on screen`);
    }
    const widget = page.locator('.monaco-hover:not(.hidden)').filter({ hasText: /\S/ });
    let text = '';
    await waitFor(async () => {
        const box = await locate();
        if (!box) {
            return false;
        }
        await page.mouse.move(box.x + 40, box.y - 40);
        await page.mouse.move(box.x, box.y);
        await widget.first().waitFor({ state: 'visible', timeout: 3000 });
        text = (await widget.first().innerText()).trim();
        return text.length > 0 && !/^Loading/.test(text);
    }, `a hover at line ${line}, column 1`);
    return text;
}

/** Poll `predicate` until it holds or the timeout passes. */
async function waitFor(predicate, what) {
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
        try {
            if (await predicate()) {
                return;
            }
        } catch {
            // The element may be re-rendering: try again.
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${TIMEOUT} ms waiting for ${typeof what === 'function' ? what() : what}`);
        }
        await page.waitForTimeout(250);
    }
}

/** Run a palette command by its title. */
async function runCommand(title) {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ timeout: TIMEOUT });
    await input.fill(`>${title}`);
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title.split(': ').pop() });
    await row.first().waitFor({ timeout: TIMEOUT });
    await page.keyboard.press('Enter');
}

/** Open a workspace file with Quick Open and wait for its tab. */
async function openFile(rel) {
    const base = path.basename(rel);
    const input = page.locator('.quick-input-widget input');
    const tab = page.locator('.editor-group-container.active .tab.active', { hasText: base });
    // Quick Open's list can still be filling when Enter lands (then nothing opens): try again.
    await waitFor(async () => {
        await page.keyboard.press('Escape');
        await page.locator('.monaco-workbench').click({ position: { x: 700, y: 300 } }).catch(() => undefined);
        await page.keyboard.press('Control+P');
        await input.waitFor({ timeout: 10000 });
        await input.fill(rel);
        const focused = page.locator('.quick-input-list .monaco-list-row.focused', { hasText: base });
        await focused.first().waitFor({ timeout: 10000 });
        await page.keyboard.press('Enter');
        await tab.waitFor({ timeout: 10000 });
        return true;
    }, `${rel} to open`);
    await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().waitFor({ timeout: TIMEOUT });
}

/** Open the Problems panel, wait until it shows `expected`, return its text and close it. */
async function problems(expected) {
    await page.keyboard.press('Control+Shift+M');
    const panel = page.locator('.markers-panel');
    let text = '';
    await waitFor(async () => {
        text = (await panel.first().innerText()).trim();
        return text.includes(expected);
    }, `"${expected}" in the Problems panel`);
    await shot('1-problems');
    await page.keyboard.press('Control+J');
    await panel.first().waitFor({ state: 'hidden', timeout: TIMEOUT });
    return text;
}

/** Put the cursor on the first line of workspace file `rel` holding `word`, so it is on screen. */
async function revealWord(rel, word) {
    const lines = fs.readFileSync(path.join(WORKSPACE, rel), 'utf8').split('\n');
    const index = lines.findIndex((l) => new RegExp(`\\b${word}\\b`).test(l));
    if (index < 0) {
        throw new Error(`${rel} does not contain ${word}`);
    }
    await page.keyboard.press('Control+G');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ timeout: TIMEOUT });
    await input.fill(`:${index + 1}`);
    await page.keyboard.press('Enter');
    await input.waitFor({ state: 'hidden', timeout: TIMEOUT });
}

/** Hover the first visible occurrence of `word` and return the hover widget's text. */
async function hover(editor, word) {
    // Where the word is, read again on every try: code lenses and inlay hints that arrive late
    // move the lines, and a mouse kept at a stale spot (over a lens) never asks for a hover.
    const locate = () => editor.evaluate((root, w) => {
        const re = new RegExp(`\\b${w}\\b`);
        for (const span of root.querySelectorAll('.view-line span span')) {
            const text = span.textContent ?? '';
            const m = re.exec(text);
            if (!m || !span.firstChild) {
                continue;
            }
            const range = document.createRange();
            range.setStart(span.firstChild, m.index);
            range.setEnd(span.firstChild, m.index + w.length);
            const r = range.getBoundingClientRect();
            return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
        }
        return null;
    }, word);
    if (!(await locate())) {
        throw new Error(`"${word}" is not visible in the editor`);
    }
    const widget = page.locator('.monaco-hover:not(.hidden)').filter({ hasText: /\S/ });
    let text = '';
    await waitFor(async () => {
        const box = await locate();
        if (!box) {
            return false;
        }
        // Move off and back on: a hover asked before the server was ready does not come back.
        await page.mouse.move(box.x, box.y - 40);
        await page.mouse.move(box.x, box.y);
        await widget.first().waitFor({ state: 'visible', timeout: 3000 });
        text = (await widget.first().innerText()).trim();
        return text.length > 0 && !/^Loading/.test(text);
    }, `a hover on ${word}`);
    return text;
}

async function statusText() {
    const items = page.locator('.statusbar-item', { hasText: 'klp-lsp' });
    return (await items.count()) > 0 ? (await items.first().innerText()).trim() : '';
}
