"""The SQLite schema of one binary's index; bump SCHEMA_VERSION on any change.

One index file holds one object (vmlinux or one module), keyed by its build-id. Addresses are
stored as signed 64-bit integers (SQLite has no unsigned type); `store.py` converts at the edge.
DIE offsets identify DWARF entries within the object's `.debug_info`.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 4

SCHEMA: Final = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per DWARF compile unit. `state`: 0 listed, 1 DWARF facts stored, 2 register facts too,
-- 3 could not be read (malformed DWARF, over its time budget): `error` says why.
CREATE TABLE cus (
    id INTEGER PRIMARY KEY,          -- offset of the CU header in .debug_info
    name TEXT NOT NULL,
    comp_dir TEXT NOT NULL,
    producer TEXT NOT NULL,
    language INTEGER,
    is_asm INTEGER NOT NULL,
    ftrace TEXT NOT NULL,            -- fentry | mcount | patchable | none
    ipa_ra INTEGER NOT NULL,
    opt_level TEXT NOT NULL,
    live_patching TEXT,
    state INTEGER NOT NULL DEFAULT 0,
    error TEXT
);

-- The files of each CU's line table (its source, the .c files it includes, its headers), as
-- tree-relative paths like decl_file; filled with the CU's DWARF facts (state 1).
CREATE TABLE cu_files (
    cu_id INTEGER NOT NULL,
    path TEXT NOT NULL
);
CREATE INDEX cu_files_path ON cu_files(path);
CREATE INDEX cu_files_cu ON cu_files(cu_id);

CREATE TABLE cu_ranges (
    cu_id INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL
);
CREATE INDEX cu_ranges_lo ON cu_ranges(lo);

-- Every FUNC symbol of the object.
CREATE TABLE symbols (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    address INTEGER NOT NULL,
    size INTEGER NOT NULL,
    section TEXT NOT NULL,
    binding TEXT NOT NULL,
    sympos INTEGER NOT NULL,
    origin TEXT NOT NULL,            -- C name with GCC's clone suffixes removed
    clone_kinds TEXT NOT NULL,       -- space-separated: "constprop isra"; "" when not a clone
    has_mcount INTEGER NOT NULL,
    cu_id INTEGER                    -- CU whose code ranges hold the address, if known
);
CREATE INDEX symbols_name ON symbols(name);
CREATE INDEX symbols_origin ON symbols(origin);
CREATE INDEX symbols_address ON symbols(address);

-- One row per C function definition: a DW_TAG_subprogram that is not a declaration and not a
-- concrete instance of another DIE (abstract inline origins and plain out-of-line functions).
CREATE TABLE functions (
    die INTEGER PRIMARY KEY,
    cu_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    linkage_name TEXT,
    decl_file TEXT,
    decl_line INTEGER,
    external INTEGER NOT NULL,
    inline INTEGER,
    calling_convention INTEGER,
    noreturn INTEGER NOT NULL,
    return_size INTEGER              -- bytes of the return type, 0 for void, NULL if unknown
);
CREATE INDEX functions_name ON functions(name);
CREATE INDEX functions_decl ON functions(decl_file, decl_line);

-- One row per concrete out-of-line copy of a function (the function itself, or a clone).
CREATE TABLE instances (
    die INTEGER PRIMARY KEY,
    function_die INTEGER NOT NULL,
    cu_id INTEGER NOT NULL,
    entry INTEGER NOT NULL,          -- lowest address (matches the symbol's address)
    ranges TEXT NOT NULL             -- "lo-hi lo-hi", hex
);
CREATE INDEX instances_function ON instances(function_die);
CREATE INDEX instances_entry ON instances(entry);

-- Formal parameters of instances (location at entry) and of functions (abstract, no location),
-- in C order (an instance's follow its function's).
CREATE TABLE params (
    owner_die INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT,
    location TEXT NOT NULL,          -- a register, stack, optimized-out, removed, constant, unknown
    type_kind TEXT,                  -- pointer, aggregate, scalar; NULL if unknown
    PRIMARY KEY (owner_die, idx)
);

-- Every DW_TAG_inlined_subroutine, with the instance whose machine code holds it.
CREATE TABLE inline_sites (
    die INTEGER PRIMARY KEY,
    function_die INTEGER NOT NULL,   -- the inlined function (abstract origin)
    cu_id INTEGER NOT NULL,
    container_die INTEGER NOT NULL,  -- the out-of-line instance that contains the code
    parent_die INTEGER,              -- enclosing inline site, when inlined through another
    call_file TEXT,
    call_line INTEGER,
    lo INTEGER
);
CREATE INDEX inline_sites_function ON inline_sites(function_die);
CREATE INDEX inline_sites_container ON inline_sites(container_die);

-- Register facts of each function's machine code, keyed by start address.
CREATE TABLE register_use (
    address INTEGER PRIMARY KEY,
    clobbers TEXT NOT NULL,          -- space-separated register names
    callee_saved_clobbers TEXT NOT NULL,
    -- Argument registers (and the indirect result register) the code reads before writing:
    -- what it really receives. Computed for GCC clones; NULL when not computed.
    arguments TEXT
);

CREATE TABLE calls (
    caller INTEGER NOT NULL,
    site INTEGER NOT NULL,
    callee INTEGER,
    kind TEXT NOT NULL
);
CREATE INDEX calls_callee ON calls(callee);
CREATE INDEX calls_caller ON calls(caller);

CREATE TABLE register_dependents (
    callee INTEGER NOT NULL,
    caller INTEGER NOT NULL,
    site INTEGER NOT NULL,           -- the caller's call instruction
    registers TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- The functions between the call and `callee`, space-separated hex start addresses, in
    -- order: "" when the site calls `callee` itself; else the called function first, each
    -- reaching the next by a call or a tail call.
    via TEXT NOT NULL DEFAULT ''
);
CREATE INDEX register_dependents_callee ON register_dependents(callee);
"""
