#!/usr/bin/env python3
"""Regenerate src/link/symbol-order.txt: the functions an idle `ferrokube server` runs.

Usage (as root, on a Linux machine with tracefs; not part of the build or the tests):
    cargo build --release --bin ferrokube
    sudo hack/symbol-order.py target/release/ferrokube [--idle SECONDS]

The linker places the listed functions first and together (see build.rs), so that the code an
idle server keeps resident is about the size of what it runs, not the 64 KiB windows the kernel
maps around every page touched. Two stages:

1. Pages. With readahead of the binary's disk turned off and the binary's page cache dropped,
   the kernel maps only the code pages that run (fault-around maps cached pages only), so the
   present pages of the text mapping after start + idle are exactly the pages executed. Every
   function overlapping one is a candidate (~2x the real set: small functions share pages).
2. Functions. A uprobe on each candidate's entry (tracefs), a second run, and the probes' hit
   counts give the functions that ran.

Registering ~22,000 uprobes took the kernel ~1 minute (39,000: 5) and removing them up to ~30; with the two
idle periods the whole run takes ~45 minutes (the list is written before the removal).
The symbol names are the mangled names of this build; names that later disappear are skipped
by the linker, so regenerate when `hack/bench --figures` shows the idle RSS drifting up.
ThinLTO-promoted locals (names ending in `.llvm.<hash>`, ~13% of the list) get a hash that
differs between checkouts in different directories (the same directory rebuilds them
identically): a build elsewhere misses those (measured 51 -> 39 MB instead of 51 -> 30 MB).
"""

import argparse
import glob
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

TRACEFS = "/sys/kernel/tracing"
GROUP = "ferrokube_order"


def text_delta(binary):
    """vaddr - file offset of the executable PT_LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[2], 16) - int(f[1], 16)
    sys.exit("no executable LOAD segment")


def functions(binary):
    """(address, size, mangled name) of every defined function."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    funcs = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTwW" and int(f[1], 16) > 0:
            funcs.append((int(f[0], 16), int(f[1], 16), f[3]))
    return funcs


def start_server(binary, data_dir, port, log):
    proc = subprocess.Popen(
        [binary, "server", "--data-dir", data_dir, "--secure-port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        with open(log.name, errors="replace") as f:
            if "created ServiceAccount" in f.read():
                return proc
        if proc.poll() is not None:
            sys.exit(f"server exited early, see {log.name}")
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"server not up after 180 s, see {log.name}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def present_text_pages(pid, binary):
    pages = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            m = line.split()
            if len(m) < 6 or m[5] != binary or m[1] != "r-xp":
                continue
            a, b = (int(x, 16) for x in m[0].split("-"))
            off = int(m[2], 16)
            pm.seek(a // 4096 * 8)
            data = pm.read((b - a) // 4096 * 8)
            for i in range((b - a) // 4096):
                if struct.unpack_from("<Q", data, i * 8)[0] >> 63 & 1:
                    pages.add(off // 4096 + i)
    return pages


def stage_pages(binary, funcs, delta, idle, work):
    ra_files = glob.glob("/sys/block/*/queue/read_ahead_kb")
    saved = {p: open(p).read().strip() for p in ra_files}
    try:
        for p in ra_files:
            with open(p, "w") as f:
                f.write("0")
        fd = os.open(binary, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        with open(os.path.join(work, "pages.log"), "w") as log:
            proc = start_server(binary, os.path.join(work, "data-pages"), 26411, log)
            time.sleep(idle)
            pages = present_text_pages(proc.pid, binary)
            stop(proc)
    finally:
        for p, v in saved.items():
            with open(p, "w") as f:
                f.write(v)
    candidates = []
    for addr, size, name in funcs:
        fo = addr - delta
        if any(p in pages for p in range(fo // 4096, (fo + size - 1) // 4096 + 1)):
            candidates.append((addr, size, name))
    print(f"stage 1: {len(pages)} code pages ran ({len(pages) * 4096 / 1e6:.1f} MB); {len(candidates)} candidate functions")
    return candidates


def stage_probes(binary, candidates, delta, idle, work, write):
    if not os.path.exists(os.path.join(TRACEFS, "uprobe_events")):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)
    by_addr = {}
    for addr, _size, name in candidates:
        by_addr.setdefault(addr, []).append(name)
    events = os.path.join(TRACEFS, "uprobe_events")
    index = {}
    try:
        # Inside the try: probes registered before a failure are removed by the `finally`.
        fd = os.open(events, os.O_WRONLY | os.O_APPEND)
        try:
            for i, (addr, names) in enumerate(sorted(by_addr.items())):
                os.write(fd, f"p:{GROUP}/f{i} {binary}:0x{addr - delta:x}\n".encode())
                index[f"f{i}"] = names
        finally:
            os.close(fd)
        with open(os.path.join(TRACEFS, "tracing_on"), "w") as f:
            f.write("0")
        with open(os.path.join(TRACEFS, "events", GROUP, "enable"), "w") as f:
            f.write("1")
        with open(os.path.join(work, "probes.log"), "w") as log:
            proc = start_server(binary, os.path.join(work, "data-probes"), 26412, log)
            time.sleep(idle)
            ran = set()
            with open(os.path.join(TRACEFS, "uprobe_profile")) as prof:
                for line in prof:
                    f = line.split()
                    if len(f) >= 3 and int(f[2]) > 0:
                        ran.update(index.get(f[1].split("/")[-1], []))
            stop(proc)
        print(f"stage 2: {len(ran)} functions ran")
        write(ran)
    finally:
        # Disabling waits for an RCU grace period per probe: ~30 minutes for 39,000 here.
        print("removing the uprobes (takes the kernel a while)")
        enable = os.path.join(TRACEFS, "events", GROUP, "enable")
        if os.path.exists(enable):
            with open(enable, "w") as f:
                f.write("0")
        fd = os.open(events, os.O_WRONLY | os.O_APPEND)
        try:
            for name in index:
                os.write(fd, f"-:{GROUP}/{name}\n".encode())
        finally:
            os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--idle", type=float, default=330.0, help="seconds idle after the controllers are up (covers the 5-minute compaction and watch restarts)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "src", "link", "symbol-order.txt"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: tracefs uprobes and the disk's readahead setting")
    # A private copy on a disk filesystem (not tmpfs: its pages are always "cached").
    work = tempfile.mkdtemp(prefix="symbol-order-", dir=os.path.dirname(os.path.abspath(args.binary)))
    binary = os.path.join(work, "ferrokube")
    shutil.copy2(args.binary, binary)
    delta = text_delta(binary)
    funcs = functions(binary)
    candidates = stage_pages(binary, funcs, delta, args.idle, work)
    addr = {}
    size = {}
    for a, s, name in funcs:
        addr.setdefault(name, a)
        size.setdefault(name, s)

    def write(ran):
        order = sorted(ran, key=lambda n: addr[n])
        with open(args.out, "w") as f:
            f.writelines(n + "\n" for n in order)
        print(f"{args.out}: {len(order)} functions, {sum(size[n] for n in order) / 1e6:.1f} MB", flush=True)

    stage_probes(binary, candidates, delta, args.idle, work, write)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
