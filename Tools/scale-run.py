#!/usr/bin/python3
"""Many Tenure daemons on one machine, one lockspace on one loop device.

Run through Tools/scale-run.sh (it builds Tenure, makes the loop device and
cleans up). Every daemon joins the lockspace and renews; worker threads make
processes on random hosts take random resources for a moment
(`tenure client hold -r R -- sleep`), so hosts contend for every resource.

An independent witness checks the result: the command each holder runs
reads the clock when it starts and when it ends; `hold` starts it after the
lease is acquired and releases after it exits, so two such intervals of
one resource must never overlap, and the lvers of one resource must grow
in the order they were taken. At the end
every daemon's status must show its lockspace valid; the worst renewal gaps
are reported.
"""
import json, os, random, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))
from common import sh, start_tenure_daemon, tool_arguments  # noqa: E402

MIB = 1 << 20


def main():
    ap = tool_arguments(__doc__)
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--resources", type=int, default=8)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--io-timeout", type=int, default=2)
    ap.add_argument("--hold-ms", type=int, default=100)
    ap.add_argument("--inject-bug", help="run the daemons with a known safety bug (TENURE_INJECT_BUG): the witness must fail the run")
    args = ap.parse_args()
    if args.inject_bug:
        os.environ["TENURE_INJECT_BUG"] = args.inject_bug
    t, dev = args.tenure, args.device

    def run_dir(h):
        return os.path.join(args.work, f"host{h}")

    def client(h, *a, check=True):
        r = subprocess.run([t, "client", *a, "--run-dir", run_dir(h)], text=True, capture_output=True)
        if check and r.returncode != 0:
            raise SystemExit(f"host {h}: tenure client {' '.join(a)} failed:\n{r.stdout}{r.stderr}")
        return r

    sh(t, "direct", "format", "--lockspace", "S", "--path", dev, "--resources", str(args.resources),
       "--max-hosts", str(max(args.hosts, 64)), "--io-timeout", str(args.io_timeout), "--force")
    daemons = []
    print(f"starting {args.hosts} daemons (io_timeout {args.io_timeout} s)…", file=sys.stderr, flush=True)
    try:
        for h in range(1, args.hosts + 1):
            daemons.append(start_tenure_daemon(t, run_dir(h), args.io_timeout, f"scale{h}", "--log-level", "warning"))
        start = time.monotonic()
        for h in range(1, args.hosts + 1):
            client(h, "add-lockspace", "-s", f"S:{h}:{dev}:0", "--async")
        joined = set()
        while len(joined) < args.hosts:
            for h in range(1, args.hosts + 1):
                if h not in joined:
                    st = json.loads(client(h, "status", "--json").stdout)
                    if st["lockspaces"] and st["lockspaces"][0]["valid"]:
                        joined.add(h)
            if time.monotonic() - start > 120:
                raise SystemExit(f"only {len(joined)} of {args.hosts} hosts joined in 120 s")
            time.sleep(0.5)
        print(f"all {args.hosts} joined in {time.monotonic() - start:.1f} s; contending for {args.minutes} min…", file=sys.stderr, flush=True)

        intervals, refused, failed = {r: [] for r in range(args.resources)}, [0], []
        lock = threading.Lock()
        stop = time.monotonic() + args.minutes * 60

        def worker(seed):
            rnd = random.Random(seed)
            while time.monotonic() < stop:
                h, r = rnd.randint(1, args.hosts), rnd.randrange(args.resources)
                res = f"S:R{r}:{dev}:{(r + 1) * MIB}"
                # The witness runs inside the hold: `hold` starts the command
                # after the lease is acquired and releases it after the command
                # exits, so the command's own clock readings lie within the hold.
                witness = f"date +%s%N; sleep {args.hold_ms / 1000}; date +%s%N"
                p = subprocess.Popen([t, "client", "hold", "-r", res, "--run-dir", run_dir(h), "--", "/bin/sh", "-c", witness],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                out, err = p.communicate()
                lines = out.split()
                with lock:
                    if p.returncode == 0 and len(lines) == 3:
                        lver = int(lines[0].split(":")[-1])
                        intervals[r].append((int(lines[1]) / 1e9, int(lines[2]) / 1e9, lver, h))
                    elif "held-by-live-host" in err or "lease-in-use" in err:
                        refused[0] += 1
                    else:
                        failed.append((h, r, p.returncode, err.strip()[:200]))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

        overlaps, regressions = [], []
        for r, xs in intervals.items():
            xs.sort()
            for a, b in zip(xs, xs[1:]):
                if b[0] < a[1]:
                    overlaps.append((r, a, b))
                if b[2] <= a[2]:
                    regressions.append((r, a, b))
        gaps, lost, failed_renewals, resident = [], [], 0, []
        for h in range(1, args.hosts + 1):
            st = json.loads(client(h, "status", "--json").stdout)
            ls = st["lockspaces"][0]
            gaps.append(ls["worst_renewal_gap_ms"])
            failed_renewals += ls["failed_renewals"]
            resident.append(st.get("resident_kib", 0))
            if not ls["valid"]:
                lost.append(h)
        taken = sum(len(x) for x in intervals.values())
        summary = {
            "hosts": args.hosts, "resources": args.resources, "minutes": args.minutes, "io_timeout": args.io_timeout,
            "acquisitions": taken, "refused_busy": refused[0], "other_failures": len(failed),
            "overlapping_holds": len(overlaps), "lver_regressions": len(regressions),
            "lockspaces_lost": len(lost), "failed_renewals": failed_renewals,
            "worst_renewal_gap_ms_max": max(gaps), "worst_renewal_gap_ms_median": statistics.median(gaps),
            "renewal_interval_ms": 2000 * args.io_timeout,
            "daemon_resident_kib_median": statistics.median(resident),
        }
        print(json.dumps(summary))
        for f in failed[:5]:
            print(f"failure: host {f[0]} R{f[1]} exit {f[2]}: {f[3]}", file=sys.stderr)
        for o in overlaps[:5]:
            print(f"OVERLAP on R{o[0]}: {o[1]} and {o[2]}", file=sys.stderr)
        ok = not overlaps and not regressions and not lost and taken > 0
        print("scale run: " + ("ok" if ok else "FAILED"), file=sys.stderr)
        sys.exit(0 if ok else 1)
    finally:
        for p in daemons:
            p.kill()
        for p in daemons:
            p.wait()


if __name__ == "__main__":
    main()
