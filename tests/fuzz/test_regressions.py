"""Every input the fuzzing found to break klp-lsp, kept under tests/fixtures/corrupt/, replayed.

`manifest.json` lists the ELF files (stored xz-compressed, written out under their `input`
name): what each once did (`was`: a traceback or a spin) and what it must do now, either one
clean error line (`match`) or an answer that names the compile units it could not read
(`unreadable`: CU name and a pattern of the reason). `lsp/unanswered.jsonl` holds messages the
server once left without a response; each must now get one.
"""

from __future__ import annotations

import json
import lzma
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import time_limit
from fuzz_cases import CORRUPT, ROOT, run_cli
from lsp_wire import Wire, run_lsp_case

_MANIFEST = json.loads((CORRUPT / "manifest.json").read_text())
_LSP = [json.loads(line) for line in (CORRUPT / "lsp" / "unanswered.jsonl").open()]


@pytest.mark.parametrize("entry", _MANIFEST, ids=[Path(e["file"]).stem for e in _MANIFEST])
def test_corrupt_elf(entry: dict[str, Any]) -> None:
    data = lzma.decompress((CORRUPT / entry["file"]).read_bytes())
    with tempfile.TemporaryDirectory() as tmp, time_limit(60):
        binary = Path(tmp) / entry["input"]
        binary.write_bytes(data)
        argv = ["show", entry["function"], "--binary", str(binary), "--json"]
        argv += ["--index-dir", f"{tmp}/index", "--jobs", str(entry["jobs"])]
        code, out, err, trace = run_cli(argv)
    assert not trace, f"{entry['what']}: {trace}"
    if entry["expect"] == "error":
        assert code == 2
        (line,) = err.strip().splitlines()
        assert line.startswith(f"klp-lsp: {binary}: "), line
        assert re.search(entry["match"], line), line
        return
    assert code == 0, err
    answer = json.loads(out)
    assert answer["matches"], "the function itself is still reported"
    got = [(u["cu"], u["reason"]) for u in answer["unreadable_units"]]
    assert len(got) == len(entry["unreadable"]), got
    for (cu, reason), (want_cu, pattern) in zip(got, entry["unreadable"], strict=True):
        assert cu == want_cu
        assert reason.startswith(f"{binary}: "), reason
        assert re.search(pattern, reason), reason


def test_once_unanswered_lsp_messages_are_answered(wire: Wire) -> None:
    from lsp_wire import LspCase

    for record in _LSP:
        if "body" in record:
            body = record["body"].replace("{ROOT}", str(ROOT)).encode()
        else:
            body = bytes.fromhex(record["body_hex"])
        case = LspCase(body, record["expect"], record["id"], record["description"])
        outcome, detail = run_lsp_case(wire, case, 30)
        assert outcome == "answer", f"{record['description']}: {detail}"
