#!/usr/bin/python3
"""How Tenure's costs grow with the layout and the load (Tenure alone).

Run through Tools/bench-scaling.sh. Two tables:

1. Acquire + release latency (one client, through the daemon) for each
   num_hosts of the layout and each number of hosts holding a host id
   (the others are taken with `tenure direct acquire-id` and left to look
   dead: their dblocks are still read, as a live host's would be).
2. Device traffic while idle (block-device statistics, through
   `tenure bench memory --hold-seconds`) with 1, 100 and 1,000 leases held:
   renewals, plus the read of each held lease's request record once a
   second; and the daemon's resident size.
"""
import json, os, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))
from common import sh, start_tenure_daemon, tool_arguments  # noqa: E402

MIB = 1 << 20


class Daemon:
    def __init__(self, tenure, work, io_timeout):
        self.t, self.run = tenure, os.path.join(work, "run")
        self.p = start_tenure_daemon(tenure, self.run, io_timeout, "scaling", "--log-level", "warning")

    def client(self, *a):
        return sh(self.t, "client", *a, "--run-dir", self.run)

    def stop(self):
        sh(self.t, "client", "shutdown", "--force", "--run-dir", self.run, check=False)
        self.p.wait()


def main():
    ap = tool_arguments(__doc__)
    ap.add_argument("--num-hosts", default="64,250,1000,2000")
    ap.add_argument("--joined", default="1,16,64")
    ap.add_argument("--held", default="1,100,1000")
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--idle-seconds", type=int, default=20)
    args = ap.parse_args()
    t, dev = args.tenure, args.device
    io = 1

    print("| num_hosts | hosts holding a host id | acquire + release p50 (ms) | p99 (ms) | view reads |")
    print("|---|---|---|---|---|")
    for num_hosts in [int(x) for x in args.num_hosts.split(",")]:
        for joined in [int(x) for x in args.joined.split(",")]:
            sh(t, "direct", "format", "--lockspace", "L", "--path", dev, "--resources", "4", "--max-hosts", str(num_hosts),
               "--io-timeout", str(io), "--force")
            # Hosts 2…joined take their host id and stop renewing: not free, so read.
            takers = [subprocess.Popen([t, "direct", "acquire-id", "-s", f"L:{h}:{dev}:0", "--io-timeout", str(io)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for h in range(2, joined + 1)]
            for p in takers:
                p.wait()
            d = Daemon(t, args.work, io)
            try:
                d.client("add-lockspace", "-s", f"L:1:{dev}:0")
                out = sh(t, "bench", "acquire", "--lockspace", "L", "--path", dev, "--resources", "4", "--clients", "1",
                         "--cycles", str(args.cycles), "--run-dir", d.run, "--json")
                m = next(json.loads(l) for l in out.stdout.splitlines() if l.startswith("{") and not json.loads(l).get("floor"))
                st = json.loads(d.client("status", "--json").stdout)
                views = st["lockspaces"][0].get("participant_view_reads", 0)
                print(f"| {num_hosts} | {joined} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {views} |", flush=True)
            finally:
                d.stop()

    held_counts = [int(x) for x in args.held.split(",")]
    most = max(held_counts)
    sh(t, "direct", "format", "--lockspace", "M", "--path", dev, "--resources", str(max(most, 1)), "--max-hosts", "64",
       "--io-timeout", str(io), "--force")
    print(f"\n| leases held | device reads/s idle | bytes read/s | writes/s | bytes written/s | daemon resident (KiB) |")
    print("|---|---|---|---|---|---|")
    for held in held_counts:
        d = Daemon(t, args.work, io)
        try:
            d.client("add-lockspace", "-s", f"M:1:{dev}:0")
            out = sh(t, "bench", "memory", "--lockspace", "M", "--path", dev, "--resources", str(max(held, 1)),
                     "--clients", "1", "--hold-seconds", str(args.idle_seconds), "--soak-seconds", "0", "--run-dir", d.run, "--json")
            rows = {r["measure"]: r for r in map(json.loads, out.stdout.splitlines())}
            tr, m = rows["idle_traffic_holding"], rows["held_leases"]
            print(f"| {held} | {tr['reads_per_second']:.1f} | {tr['bytes_read_per_second']:,.0f} | {tr['writes_per_second']:.1f} | "
                  f"{tr['bytes_written_per_second']:,.0f} | {m['resident_kib']} |", flush=True)
        finally:
            d.stop()


if __name__ == "__main__":
    main()
