"""GCC clone-name parsing: data-driven cases from the Debian 6.1 corpus and a property test."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klp_lsp.analysis.clones import cold_parent, is_cold_part, parse_clone_name


def check(symbol: str, origin: str, kinds: tuple[str, ...]) -> None:
    parsed = parse_clone_name(symbol)
    assert (parsed.symbol, parsed.origin, parsed.kinds) == (symbol, origin, kinds)
    assert parsed.is_clone == bool(kinds)


@pytest.mark.parametrize(
    ("symbol", "origin", "kinds"),
    [
        ("vfs_read", "vfs_read", ()),
        ("set_pages_state.cold", "set_pages_state", ("cold",)),
        ("set_bringup_idt_handler.constprop.0", "set_bringup_idt_handler", ("constprop",)),
        ("snp_cpuid_hv.part.0", "snp_cpuid_hv", ("part",)),
        (
            "intel_pmu_save_and_restart_reload.isra.0",
            "intel_pmu_save_and_restart_reload",
            ("isra",),
        ),
        ("get_fixed_ranges.constprop.0.cold", "get_fixed_ranges", ("constprop", "cold")),
        ("measure_residency_fn.constprop.0.isra.0", "measure_residency_fn", ("constprop", "isra")),
        (
            "proc_first_pos_non_zero_ignore.isra.0.cold",
            "proc_first_pos_non_zero_ignore",
            ("isra", "cold"),
        ),
        ("hv_call_deposit_pages.part.0.cold", "hv_call_deposit_pages", ("part", "cold")),
        ("vfs_statfs.part.0.isra.0", "vfs_statfs", ("part", "isra")),
        ("get_mm_memcg_path.part.0.constprop.0", "get_mm_memcg_path", ("part", "constprop")),
        (
            "invoke_bpf_prog.constprop.0.isra.0.cold",
            "invoke_bpf_prog",
            ("constprop", "isra", "cold"),
        ),
        ("foo.lto_priv.0", "foo", ("lto_priv",)),
        ("foo.cold.12", "foo", ("cold",)),
        ("foo.localalias", "foo", ("localalias",)),
        ("foo.llvm.1234567", "foo", ("llvm",)),
        ("foo.isra.12.constprop.3", "foo", ("isra", "constprop")),
        # Not clones: static variables, labels, file names, malformed chains.
        ("__key.0", "__key.0", ()),
        (".LC0", ".LC0", ()),
        ("main.c", "main.c", ()),
        ("foo.isra", "foo.isra", ()),
        ("foo.isra.x", "foo.isra.x", ()),
        ("foo.constprop.0.bar", "foo.constprop.0.bar", ()),
        ("foo.", "foo.", ()),
        ("", "", ()),
    ],
)
def test_parse_clone_name(symbol: str, origin: str, kinds: tuple[str, ...]) -> None:
    check(symbol, origin, kinds)


@pytest.mark.parametrize(
    ("symbol", "parent"),
    [
        ("foo.cold", "foo"),
        ("foo.isra.0.cold", "foo.isra.0"),
        ("foo.cold.3", "foo"),
        ("foo.part.0", None),
        ("foo", None),
        ("cold", None),
    ],
)
def test_cold_parent(symbol: str, parent: str | None) -> None:
    assert cold_parent(symbol) == parent
    assert is_cold_part(symbol) == (parent is not None)


_identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
_suffix = st.one_of(
    st.tuples(st.sampled_from(["isra", "constprop", "part", "lto_priv"]), st.integers(0, 99)).map(
        lambda t: (t[0], f".{t[0]}.{t[1]}")
    ),
    st.just(("cold", ".cold")),
)


@given(_identifier, st.lists(_suffix, max_size=4))
def test_chain_round_trip(origin: str, suffixes: list[tuple[str, str]]) -> None:
    symbol = origin + "".join(text for _, text in suffixes)
    parsed = parse_clone_name(symbol)
    assert parsed.origin == origin
    assert parsed.kinds == tuple(kind for kind, _ in suffixes)


@given(st.text(max_size=30))
def test_never_raises_and_origin_is_a_prefix(symbol: str) -> None:
    parsed = parse_clone_name(symbol)
    assert symbol.startswith(parsed.origin)
    assert parsed.is_clone == (parsed.origin != symbol)
