#!/usr/bin/env python3
"""Run `check`, then `generate --build --try`, on every patch of this directory against Debian's
6.1.176-1 kernel (ABI 6.1.0-50), and write results.json and the README's results table.

    run.py CORPUS HEADERS INDEX_DIR WORK [PATCH ...]

CORPUS is the 6.1.176-1 corpus (get-debian-kernel --abi 6.1.0-50 --headers: amd64/vmlinux,
amd64/modules, amd64/image, src), HEADERS its kbuild tree (/usr/src/linux-headers-6.1.0-50-cloud-
amd64), WORK a scratch directory for the module builds and the check programs. A patch to a
module is given that module's .ko (found from the CU name) besides vmlinux. Patches with a
behaviour check (BEHAVIOUR below) run its program in the VM with the livepatch enabled, disable
the livepatch, and run it again: the two outputs show the new and the old code.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKS = HERE / "checks"

# Patch file prefix (release-subject slug) -> the check program of checks/.
BEHAVIOUR = {
    "6.1.191-fcntl-refuse-F-SET-RW-HINT": "rw_hint_immutable",
    "6.1.188-prctl-fix-PR-SET-MM-AUXV": "auxv_terminator",
    "6.1.189-net-arp-terminate-device-name": "arp_devname",
}
# Source directories of modules, to find a module patch's .ko (relative to amd64/modules).
MODULES = {
    "fs/autofs/": "fs/autofs/autofs4.ko",
    "fs/fuse/": "fs/fuse/fuse.ko",
    "fs/nfsd/": "fs/nfsd/nfsd.ko",
    "crypto/ecrdsa.c": "crypto/ecrdsa_generic.ko",
    "net/bridge/": "net/bridge/bridge.ko",
}


def klp(*args: str) -> tuple[int, dict, float]:  # type: ignore[type-arg]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "klp_lsp", *args], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - start
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError:
        doc = {"stderr": done.stderr.strip()[-2000:]}
    return done.returncode, doc, seconds


def patched_file(patch: Path) -> str:
    m = re.search(r"^\+\+\+ b/(\S+)", patch.read_text(), re.M)
    assert m, patch
    return m.group(1)


def vmlinux_cus(index_dir: Path, build_id: str) -> set[str]:
    con = sqlite3.connect(f"file:{index_dir / (build_id + '.klpidx')}?mode=ro", uri=True)
    try:
        return {r[0].removeprefix("./") for r in con.execute("SELECT name FROM cus")}
    finally:
        con.close()


def main() -> int:
    corpus, headers, index_dir, work = (Path(a) for a in sys.argv[1:5])
    chosen = [Path(p) for p in sys.argv[5:]] or sorted(HERE.glob("*.patch"))
    vmlinux = corpus / "amd64" / "vmlinux"
    work.mkdir(parents=True, exist_ok=True)
    programs = {}
    for name in set(BEHAVIOUR.values()):
        exe = work / name
        cmd = ["gcc", "-static", "-O2", "-o", str(exe), str(CHECKS / f"{name}.c")]
        subprocess.run(cmd, check=True)
        programs[name] = exe
    results = []
    for patch in chosen:
        path = patched_file(patch)
        binaries = ["--binary", str(vmlinux)]
        module = next((ko for prefix, ko in MODULES.items() if path.startswith(prefix)), None)
        if module is not None:
            binaries += ["--binary", str(corpus / "amd64" / "modules" / module)]
        common = [*binaries, "--source", str(corpus / "src"), "--index-dir", str(index_dir)]
        common += ["--jobs", "2"]
        code, check, _ = klp("check", str(patch), *common, "--format", "json", "--no-background")
        errors = [f for f in check.get("findings", []) if f["severity"] == "error"]
        row = {
            "patch": patch.name,
            "file": path,
            "object": "vmlinux" if module is None else Path(module).stem.replace("-", "_"),
            "check_errors": [f"[{f['kind']}] {f['message']}" for f in errors],
            "replace": [
                f"{e['object']}:{e['symbol']},{e['sympos']}" for e in check.get("replace", [])
            ],
        }
        if code not in (0, 1):
            row["outcome"] = "check failed: " + str(check.get("stderr"))
            results.append(row)
            print(json.dumps(row), flush=True)
            continue
        out = work / patch.stem
        extra: list[str] = []
        name = re.sub(r"[^A-Za-z0-9_]", "_", "livepatch_" + patch.stem)[:55]
        behaviour = next((v for k, v in BEHAVIOUR.items() if patch.name.startswith(k)), None)
        if behaviour is not None:
            prog = f"/files/{behaviour}"
            sysfs = f"/sys/kernel/livepatch/{name}"
            run = (
                f"echo patched: $({prog}); echo 0 > {sysfs}/enabled;"
                f" for i in $(seq 40); do [ -e {sysfs} ] || break; sleep 0.25; done;"
                f" echo unpatched: $({prog})"
            )
            extra = ["--run", run, "--file", str(programs[behaviour])]
        code, doc, gen_s = klp(
            "generate", str(patch), *common, "-o", str(out), "--headers", str(headers),
            "--try", "--format", "json", "--no-background", *extra,
        )  # fmt: skip
        tried = doc.get("try") or {}
        doc.setdefault("functions", [])
        doc.setdefault("problems", [])
        functions = [f"{f['object']}:{f['old_name']} -> {f['new_func']}" for f in doc["functions"]]
        problems = [f"{p['severity']}: [{p['kind']}] {p['message']}" for p in doc["problems"]]
        verify = doc.get("verify")
        row.update(
            {
                "exit": code,
                "seconds": round(gen_s, 1),
                "functions": functions,
                "problems": problems,
                "built": bool(doc.get("build") and doc["build"]["ok"]),
                "klp_relocations": doc.get("klp_relocations"),
                "verify_errors": None if verify is None else verify["summary"]["errors"],
                "modules": [
                    {k: m.get(k) for k in ("name", "loaded", "enabled", "transition")}
                    for m in tried.get("modules", [])
                ],
                "run": tried.get("run"),
                "stderr": doc.get("stderr"),
            }
        )  # fmt: skip
        lp = [m for m in row["modules"] if m["name"] == name]
        if code == 0 and lp and lp[0]["transition"] == "complete":
            row["outcome"] = "loaded, transition complete"
        elif not row["built"]:
            row["outcome"] = "build failed"
        else:
            row["outcome"] = "failed"
        results.append(row)
        print(json.dumps(row), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
