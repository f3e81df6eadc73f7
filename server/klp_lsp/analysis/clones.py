"""Split GCC clone symbol names (`foo.constprop.0.isra.0`, `foo.part.0.cold`) into origin and kinds.

Measured on Debian 6.1 vmlinux (amd64 and arm64): every dotted FUNC name is `origin` followed by
a chain of `.isra.N`, `.constprop.N`, `.part.N` and `.cold`, e.g. `invoke_bpf_prog.constprop.0.
isra.0.cold`. Other dotted names (`foo.0` static variables, `.LC0`, `file.c`) are not clones.
"""

from __future__ import annotations

from klp_lsp.model import CloneName

# Suffixes followed by a number: GCC's IPA clones (ipa-sra `isra`, ipa-cp `constprop`,
# ipa-split `part`), `lto_priv` (a promoted static under LTO), and clang's ThinLTO `llvm`
# (followed by a hash of digits).
NUMBERED_KINDS = frozenset({"isra", "constprop", "part", "lto_priv", "llvm"})
# Suffixes that stand alone: `cold` (hot/cold splitting; older GCC wrote `.cold.N`, so an
# optional number is accepted), `localalias` (a local alias GCC makes for a global).
PLAIN_KINDS = frozenset({"cold", "localalias"})


def parse_clone_name(symbol: str) -> CloneName:
    """Split `symbol` into its C origin and clone kinds; a non-clone keeps itself as origin."""
    origin, dot, rest = symbol.partition(".")
    if not dot or not origin:
        return CloneName(symbol, symbol, ())
    parts = rest.split(".")
    kinds: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        has_number = i + 1 < len(parts) and parts[i + 1].isdigit()
        if part in NUMBERED_KINDS and has_number:
            i += 2
        elif part in PLAIN_KINDS:
            i += 2 if has_number else 1
        else:
            return CloneName(symbol, symbol, ())
        kinds.append(part)
    return CloneName(symbol, origin, tuple(kinds))


def is_cold_part(symbol: str) -> bool:
    """True for the `.cold` part split off a function, which is never a patch target itself."""
    kinds = parse_clone_name(symbol).kinds
    return bool(kinds) and kinds[-1] == "cold"


def cold_parent(symbol: str) -> str | None:
    """The symbol a `.cold` part belongs to (`foo.isra.0.cold` -> `foo.isra.0`), else None."""
    if not is_cold_part(symbol):
        return None
    head, _, tail = symbol.rpartition(".")
    # `.cold.N` (older GCC) drops two components.
    return head.rpartition(".")[0] if tail.isdigit() else head


# ipa-sra (`isra`), ipa-cp (`constprop`) and ipa-split (`part`) clones take arguments in GCC's own
# layout (parameters removed, replaced by constants or by the values they pointed to, or the
# split-off part's live values): no C function has their calling convention.
PRIVATE_ABI_KINDS = frozenset({"isra", "constprop", "part"})


def has_private_abi(symbol: str) -> bool:
    """True for a GCC clone whose calling convention is not the C function's."""
    return bool(PRIVATE_ABI_KINDS & set(parse_clone_name(symbol).kinds))
