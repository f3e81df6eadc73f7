"""Compiler guarantees of one CU, read from the command-line flags GCC records in DW_AT_producer.

The question this answers for a live patch: may callers in this CU rely on a same-CU callee's
actual register usage (IPA-RA), and how does ftrace hook the CU's functions?
"""

from __future__ import annotations

import re
from typing import Literal

from klp_lsp import model

# Optimisation levels at which GCC enables -fipa-ra by default: opts.cc default_options_table has
# `{ OPT_LEVELS_2_PLUS, OPT_fipa_ra, NULL, 1 }`, and -Os, -Oz and -Ofast count as level 2 or more.
# -O1 and -Og leave it off (checked with `gcc -Q --help=optimizers` for GCC 12.2).
_IPA_RA_LEVELS = frozenset({"2", "3", "s", "z", "fast"})


def parse_producer(producer: str) -> model.CompilerFlags:
    """The ftrace mode and IPA-RA guarantee of a CU from its DW_AT_producer string."""
    opt_level = ""
    profile = False  # -p or -pg; GCC records -pg as -p in DW_AT_producer
    fentry = False
    patchable: str | None = None
    live_patching: str | None = None
    explicit_ipa_ra: bool | None = None
    is_gcc = producer.startswith("GNU ") and not producer.startswith("GNU AS")
    for flag in producer.split():
        if not flag.startswith("-"):
            continue
        if flag.startswith("-O"):
            # The last -O wins; a bare -O means -O1, and -O<n> above 3 acts as -O3.
            level = flag[2:] or "1"
            if level.isdigit() and int(level) > 3:
                level = "3"
            opt_level = level
        elif flag in ("-p", "-pg"):
            profile = True
        elif flag == "-mfentry":
            fentry = True
        elif flag == "-mno-fentry":
            fentry = False
        elif flag.startswith("-fpatchable-function-entry="):
            patchable = flag.split("=", 1)[1]
        elif flag.startswith("-flive-patching="):
            live_patching = flag.split("=", 1)[1]
        elif flag == "-flive-patching":
            # The bare option means inline-clone (GCC's common.opt default).
            live_patching = "inline-clone"
        elif flag == "-fipa-ra":
            explicit_ipa_ra = True
        elif flag == "-fno-ipa-ra":
            explicit_ipa_ra = False

    # -fpatchable-function-entry=N[,M] reserves N NOPs; N == 0 reserves none and has no effect.
    patch_area = patchable is not None and patchable.split(",", 1)[0] not in ("", "0")

    ftrace: Literal["fentry", "mcount", "patchable", "none"]
    if profile:
        ftrace = "fentry" if fentry else "mcount"
    elif patch_area:
        ftrace = "patchable"
    else:
        ftrace = "none"

    ipa_ra = opt_level in _IPA_RA_LEVELS if explicit_ipa_ra is None else explicit_ipa_ra
    # GCC's toplev.cc (process_options) drops IPA-RA for the whole CU whatever the other flags:
    #   if (profile_flag || patch_area_size
    #       || !targetm.have_prologue () || !targetm.have_epilogue ())
    #     flag_ipa_ra = 0;
    # and opts.cc control_options_for_live_patching clears it for every -flive-patching level.
    if profile or patch_area or live_patching is not None or opt_level in ("", "0"):
        ipa_ra = False
    if not is_gcc:
        # An assembler (GNU AS) or an unknown producer makes no IPA-RA promises either way.
        ipa_ra = False

    return model.CompilerFlags(
        producer=producer,
        ftrace=ftrace,
        ipa_ra=ipa_ra,
        opt_level=opt_level,
        live_patching=live_patching,
        patchable_entry=patchable,
    )


_VERSION = re.compile(r"\b(\d+\.\d+(?:\.\d+)?)\b")


def compiler_identity(text: str) -> tuple[str, str] | None:
    """(`GCC` or `clang`, version) named by a DW_AT_producer or a `cc --version` first line.

    `GNU C11 12.2.0 -m64 ...` and `gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0` are both
    ("GCC", "12.2.0"); `clang version 15.0.6 (...)` is ("clang", "15.0.6"); an assembler's
    producer (`GNU AS 2.40`) is None.
    """
    head = text.split(" -", 1)[0]
    if head.startswith("GNU AS") or not head:
        return None
    family = "clang" if "clang" in head else "GCC" if ("GNU" in head or "gcc" in head) else None
    if family is None:
        return None
    # `cc --version` ends with the version; DW_AT_producer has it after the language.
    found = _VERSION.findall(head)
    if not found:
        return None
    return family, found[-1] if family == "GCC" and "(" in head else found[0]
