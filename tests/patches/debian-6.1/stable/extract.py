#!/usr/bin/env python3
"""Extract single upstream stable fixes from two Debian source trees into patch files.

Debian's linux 6.1.176-1 (ABI 6.1.0-50) lacks the fixes of linux-stable 6.1.177..6.1.192 that
6.1.192-2 (the corpus kernel) has. For each entry of SELECTION below, the hunks of one file that
differ between the two trees, limited to the named functions when a file holds more than one
fix, make a patch against 6.1.176-1; the subject and the stable release come from the upstream
subject list in Debian's changelog of 6.1.192-2 (Debian lists every stable commit). A patch is
written only if it applies to 6.1.176-1 with `patch -p1 --dry-run`.

Usage: extract.py OLD_TREE NEW_TREE CHANGELOG.Debian.gz OUTDIR
"""

from __future__ import annotations

import difflib
import gzip
import re
import subprocess
import sys
from pathlib import Path

# (file, exact upstream subject, the functions whose hunks belong to the fix or text that only the
# fix's changed lines contain, or () for all hunks)
SELECTION: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "kernel/sys.c",
        "prctl: fix PR_SET_MM_AUXV losing the forced AT_NULL terminator",
        (),
    ),
    (
        "net/ipv4/arp.c",
        "net: arp: terminate device name before lookup",
        (),
    ),
    (
        "fs/fcntl.c",
        "fcntl: refuse F_SET_RW_HINT on an immutable inode",
        (),
    ),
    (
        "kernel/time/namespace.c",
        "time/namespace: Validate nanosecond field in proc_timens_set_offset()",
        (),
    ),
    (
        "kernel/time/time.c",
        "time: Fix off-by-one in compat settimeofday() usec validation",
        (),
    ),
    (
        "fs/fsopen.c",
        "fs: refuse fspick() on internal superblocks",
        (),
    ),
    (
        "block/blk-core.c",
        "block: make bio_check_eod work for zero sized devices",
        ("bio_check_eod",),
    ),
    (
        "crypto/asymmetric_keys/verify_pefile.c",
        "crypto: asymmetric_keys - fix OOB read in pefile_digest_pe_contents",
        (),
    ),
    (
        "fs/ext4/namei.c",
        "ext4: check dir entry fits before reading the hash trailer in ext4_search_dir()",
        (),
    ),
    (
        "fs/jbd2/journal.c",
        "jbd2: fix integer underflow in jbd2_journal_initialize_fast_commit()",
        (),
    ),
    (
        "fs/sysfs/file.c",
        "sysfs: clamp show() return value in sysfs_kf_read()",
        (),
    ),
    (
        "io_uring/rsrc.c",
        "io_uring: check for overflows in io_pin_pages",
        (),
    ),
    (
        "kernel/pid_namespace.c",
        "pid_namespace: make zap_pid_ns_processes() freezable",
        (),
    ),
    (
        "kernel/time/timer.c",
        "timer: Keep debugobjects state consistent in migrate_timer_list()",
        (),
    ),
    (
        "mm/mempolicy.c",
        "mm/mempolicy: fix migrate_to_node() assuming there is at least one VMA in a MM",
        (),
    ),
    (
        "mm/swapfile.c",
        "mm/swap: reject swapon() on filesystem-level encrypted files",
        (),
    ),
    (
        "net/ipv6/exthdrs_core.c",
        "ipv6: do not let ipv6_find_hdr() return an offset past the packet end",
        (),
    ),
    (
        "net/ipv6/xfrm6_policy.c",
        "xfrm6: clear dst.dev on error to avoid double netdev_put in xfrm6_fill_dst()",
        # The other hunk of this function is "net: introduce dst_rt6_info() helper".
        ("xdst->u.dst.dev = NULL;",),
    ),
    (
        "security/apparmor/procattr.c",
        "apparmor: aa_getprocattr free procattr leak on format failure",
        (),
    ),
    (
        "security/apparmor/label.c",
        "apparmor: aa_label_alloc use aa_label_free on alloc failure",
        (),
    ),
    (
        "security/keys/keyctl_pkey.c",
        "KEYS: fix overflow in keyctl_pkey_params_get_2()",
        (),
    ),
    (
        "kernel/locking/rtmutex.c",
        "locking/rtmutex: Skip remove_waiter() when waiter is not enqueued",
        (),
    ),
    (
        "drivers/input/input-compat.c",
        "Input: zero ff_effect before compat copy in input_ff_effect_from_user",
        (),
    ),
    (
        "lib/string.c",
        "lib/string: fix memchr_inv() for large ranges",
        (),
    ),
    (
        "kernel/trace/trace_eprobe.c",
        "tracing/eprobe: Fix exact system name matching in eprobe_dyn_event_match()",
        ("eprobe_dyn_event_match",),
    ),
    (
        "fs/autofs/inode.c",
        "autofs: fix sbi->pipe file reference leak in autofs_kill_sb()",
        (),
    ),
    (
        "fs/fuse/inode.c",
        "fuse: check for NULL root inode in fuse_fill_super_submount",
        (),
    ),
    (
        "crypto/ecrdsa.c",
        "crypto: ecrdsa - fix unknown OID check in ecrdsa_param_curve",
        (),
    ),
    (
        "fs/nfsd/nfsfh.c",
        "NFSD: remove flawed WARN_ON_ONCE from nfsd_mode_check",
        (),
    ),
    (
        "net/bridge/br_stp_bpdu.c",
        "bridge: check llc_mac_hdr_init() return value in br_send_bpdu()",
        (),
    ),
]


def changelog(path: Path) -> dict[str, str]:
    """Upstream subject -> the stable release whose ChangeLog lists it."""
    out: dict[str, str] = {}
    stable = ""
    last = None
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    for line in lines:
        m = re.search(r"ChangeLog-(6\.1\.\d+)", line)
        if m:
            stable = m.group(1)
            continue
        m = re.match(r"^    - (.*)", line)
        if m:
            last = m.group(1).rstrip()
            out[re.sub(r"\s*\(CVE-[^)]*\)$", "", last)] = stable
            continue
        m = re.match(r"^      (\S.*)", line)
        if m and last is not None:
            del out[re.sub(r"\s*\(CVE-[^)]*\)$", "", last)]
            last = last + " " + m.group(1).rstrip()
            out[re.sub(r"\s*\(CVE-[^)]*\)$", "", last)] = stable
    return out


def enclosing(lines: list[str], index: int) -> str:
    """The function a 0-based line belongs to: the last `name(` line starting a definition."""
    for i in range(index, -1, -1):
        m = re.match(r"^[A-Za-z].*?\b(\w+)\(", lines[i])
        if m and not lines[i].rstrip().endswith(";"):
            return m.group(1)
    return ""


def hunks(old: str, new: str, path: str, functions: tuple[str, ...]) -> list[str]:
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    groups = difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(3)
    out = []
    for group in groups:
        i1, i2 = group[0][1], group[-1][2]
        j1, j2 = group[0][3], group[-1][4]
        if functions:
            # A filter names the fix's functions, or a line only the fix's hunks change.
            changed = next(op for op in group if op[0] != "equal")
            lines = [
                x for op in group if op[0] != "equal" for x in a[op[1] : op[2]] + b[op[3] : op[4]]
            ]
            if enclosing(a, changed[1]) not in functions and not any(
                f in x for f in functions for x in lines
            ):
                continue
        text = [f"@@ -{i1 + 1},{i2 - i1} +{j1 + 1},{j2 - j1} @@\n"]
        for tag, x1, x2, y1, y2 in group:
            if tag == "equal":
                text += [" " + line for line in a[x1:x2]]
            if tag in ("replace", "delete"):
                text += ["-" + line for line in a[x1:x2]]
            if tag in ("replace", "insert"):
                text += ["+" + line for line in b[y1:y2]]
        out.append("".join(text))
    return out


def main() -> int:
    old_tree, new_tree, log, outdir = (Path(a) for a in sys.argv[1:5])
    releases = changelog(log)
    outdir.mkdir(parents=True, exist_ok=True)
    for path, subject, functions in SELECTION:
        stable = releases.get(subject)
        if stable is None:
            print(f"{path}: subject not in the changelog: {subject}", file=sys.stderr)
            return 1
        old = (old_tree / path).read_text(errors="surrogateescape")
        new = (new_tree / path).read_text(errors="surrogateescape")
        body = "".join(hunks(old, new, path, functions))
        slug = re.sub(r"[^A-Za-z0-9]+", "-", subject).strip("-")[:60]
        name = f"{stable}-{slug}.patch"
        text = (
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
            f"Subject: [PATCH] {subject}\n\n"
            f"Upstream: linux-stable {stable}, as listed in Debian's linux 6.1.192-2 changelog.\n"
            f"Extracted from {path} between Debian's linux-source 6.1.176-1 and 6.1.192-2\n"
            "by tests/patches/debian-6.1/stable/extract.py; applies to 6.1.176-1.\n"
            "---\n"
            f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n{body}"
        )
        dry = subprocess.run(
            ["patch", "-p1", "--dry-run", "-s", "-d", str(old_tree)], input=text.encode(),
            capture_output=True, check=False,
        )  # fmt: skip
        if dry.returncode != 0:
            print(f"{name}: does not apply to {old_tree}: {dry.stdout.decode()}", file=sys.stderr)
            return 1
        (outdir / name).write_text(text, errors="surrogateescape")
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
