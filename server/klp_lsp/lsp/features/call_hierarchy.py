"""Call hierarchy from the binary: who calls a function (directly, through its clones, or by
inlining it) and what it calls, as the machine code says rather than the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from klp_lsp.index.query import ObjectIndex
from klp_lsp.lsp import convert
from klp_lsp.lsp.features.hover import reports_for, word_at_position
from klp_lsp.model import FunctionReport

if TYPE_CHECKING:
    from klp_lsp.lsp.server import KlpServer

# Callers listed per request: the most-called kernel functions have thousands.
MAX_CALLS = 500


def c_name(symbol: str) -> str:
    """`foo.isra.0` -> `foo`: the C function a (clone) symbol belongs to."""
    return symbol.split(".", 1)[0]


def definition_site(obj: ObjectIndex, name: str) -> tuple[str | None, int | None]:
    """Where `name` is defined: one indexed lookup, unlike a full report per caller."""
    definitions = obj.definitions_of(name)
    return definitions[0] if definitions else (None, None)


class Locator:
    """Source locations of functions for hierarchy items, cached for one request."""

    def __init__(self, server: KlpServer, fallback_uri: str) -> None:
        self.root = server.source_root()
        self.fallback_uri = fallback_uri
        self._cache: dict[tuple[str, str], tuple[str, int]] = {}

    def _location(self, decl_file: str | None, decl_line: int | None) -> tuple[str, int]:
        if decl_file and self.root is not None:
            path = self.root / decl_file
            if path.is_file():
                return path.as_uri(), max((decl_line or 1) - 1, 0)
        if decl_file and Path(decl_file).is_absolute() and Path(decl_file).is_file():
            return Path(decl_file).as_uri(), max((decl_line or 1) - 1, 0)
        return self.fallback_uri, 0

    def of_report(self, r: FunctionReport) -> tuple[str, int]:
        return self._location(r.decl_file, r.decl_line)

    def of_symbol(self, obj: ObjectIndex, symbol: str) -> tuple[str, int]:
        key = (obj.object, symbol)
        if key not in self._cache:
            self._cache[key] = self._location(*definition_site(obj, c_name(symbol)))
        return self._cache[key]

    def item(self, obj: ObjectIndex, symbol: str, detail: str) -> types.CallHierarchyItem:
        uri, line = self.of_symbol(obj, symbol)
        return convert.call_item(symbol, obj.object, uri, line, detail)


def _reports(server: KlpServer, data: Any) -> list[FunctionReport]:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return []
    reports = reports_for(server, data["name"], None)
    return [r for r in reports if r.object == data.get("object")] or reports


def register(server: KlpServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_PREPARE_CALL_HIERARCHY)
    @server.guard("prepareCallHierarchy", default=None)
    def prepare(params: types.CallHierarchyPrepareParams) -> list[types.CallHierarchyItem] | None:
        found = word_at_position(server, params.text_document.uri, params.position)
        if found is None:
            return None
        locator = Locator(server, params.text_document.uri)
        items = []
        for r in reports_for(server, found[0], params.text_document.uri):
            uri, line = locator.of_report(r)
            detail = f"{r.object} · {convert.lens_title(r)}"
            items.append(convert.call_item(r.name, r.object, uri, line, detail))
        return items or None

    @server.feature(types.CALL_HIERARCHY_INCOMING_CALLS)
    @server.guard("callHierarchy/incomingCalls", default=None)
    def incoming(
        params: types.CallHierarchyIncomingCallsParams,
    ) -> list[types.CallHierarchyIncomingCall] | None:
        indexes = server.index.interactive
        if indexes is None:
            return None
        locator = Locator(server, params.item.uri)
        calls: dict[tuple[str, str], types.CallHierarchyIncomingCall] = {}

        def add(obj: ObjectIndex, caller: str, label: str) -> None:
            if (caller, label) in calls or len(calls) >= MAX_CALLS:
                return
            item = locator.item(obj, caller, label)
            calls[(caller, label)] = types.CallHierarchyIncomingCall(
                from_=item, from_ranges=[item.selection_range]
            )

        for r in _reports(server, params.item.data):
            obj = indexes.get_object(r.object)
            if obj is None:
                continue
            for fact in obj.callers_of(s.address for s in r.symbols):
                add(obj, fact.caller, convert.call_kind_label(fact, None))
            for clone in r.clones:
                for fact in obj.callers_of([clone.address]):
                    add(obj, fact.caller, convert.call_kind_label(fact, clone.name))
            for site in r.inlined_into:
                depth = "" if site.depth == 1 else f", {site.depth} levels deep"
                where = f" at {site.call_file}:{site.call_line}" if site.call_file else ""
                dead = f" (dead: {site.reason})" if site.dead else ""
                add(obj, site.function, f"inlined{depth}{where}{dead}")
        return list(calls.values())

    @server.feature(types.CALL_HIERARCHY_OUTGOING_CALLS)
    @server.guard("callHierarchy/outgoingCalls", default=None)
    def outgoing(
        params: types.CallHierarchyOutgoingCallsParams,
    ) -> list[types.CallHierarchyOutgoingCall] | None:
        indexes = server.index.interactive
        if indexes is None:
            return None
        locator = Locator(server, params.item.uri)
        calls: dict[tuple[str, str], types.CallHierarchyOutgoingCall] = {}
        for r in _reports(server, params.item.data):
            obj = indexes.get_object(r.object)
            if obj is None:
                continue
            for s in (*r.symbols, *r.clones):
                for fact in obj.callees_of(s.address):
                    if fact.callee is None or len(calls) >= MAX_CALLS:
                        continue
                    label = fact.kind if s in r.symbols else f"{fact.kind} from clone {s.name}"
                    key = (fact.callee, label)
                    if key not in calls:
                        item = locator.item(obj, fact.callee, label)
                        calls[key] = types.CallHierarchyOutgoingCall(
                            to=item, from_ranges=[item.selection_range]
                        )
        return list(calls.values())
