"""Malformed LSP messages to a real `klp-lsp serve`: every request gets a response.

`lsp_wire.random_lsp_case` derives each message from a valid one for a feature the server has
(hover, code lens and its resolve, code actions, call hierarchy, workspace symbols, the
commands, document changes): junk in a params leaf, a key removed, params of the wrong type,
unknown methods, positions out of range, a mutated patch document, a broken envelope, an id of
the wrong type, invalid JSON, a batch. A request must be answered with its id (an invalid id:
an error with id null); after a notification the server must still answer the next request.
"""

from __future__ import annotations

import random

from conftest import count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from lsp_wire import Wire, random_lsp_case, run_lsp_case

_TIMEOUT = 30.0


@fuzz_settings(examples=300)
@given(rng=st.randoms(use_true_random=False))
def test_malformed_message_is_answered(wire: Wire, rng: random.Random) -> None:
    case = random_lsp_case(rng, wire.new_id())
    outcome, detail = run_lsp_case(wire, case, _TIMEOUT)
    count("lsp", outcome if outcome != "answer" else f"answer ({detail})")
    assert outcome == "answer", f"{case.description}: {case.body[:500]!r}: {detail}"
