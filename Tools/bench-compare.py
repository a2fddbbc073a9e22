#!/usr/bin/python3
"""Tenure and sanlock side by side, on one device, in one run, alternating.

Run through Tools/bench-compare.sh, which installs sanlock, builds Tenure,
makes the loop device and cleans up. Both implementations get the same
layout (the same num_hosts, laid out by `tenure direct format`, which writes
sanlock's format) in separate areas of the same device, the same io_timeout
and the same watchdog fire time (60 s, sanlock's fixed value), and run
without a watchdog device. Only one implementation's daemons run at a time.

Each row is the median over the rounds; the last column is the ratio
sanlock / Tenure for times (higher is better for Tenure) and Tenure /
sanlock for rates.
"""
import json, os, statistics, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))
from common import block_stat, sh, start_tenure_daemon, tool_arguments, wait_for  # noqa: E402

MIB = 1 << 20
SANLOCK_AREA = 256 * MIB   # sanlock's lockspace; Tenure's is at 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def diff(a, b):
    return {k: b[k] - a[k] for k in a}


class Implementation:
    """What both sides share: daemons by host number, stopped or crashed."""
    daemons: dict

    def stop(self, host):
        p = self.daemons.pop(host)
        self.ask_to_stop(host)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def crash(self, host):
        p = self.daemons.pop(host)
        p.kill()
        p.wait()


class Tenure(Implementation):
    name = "tenure"

    def __init__(self, args, work):
        self.args, self.bin, self.dev, self.work = args, args.tenure, args.device, work
        self.daemons = {}

    def lockspace(self, host):
        return f"T:{host}:{self.dev}:0"

    def resource(self, i):
        return f"T:R{i}:{self.dev}:{(i + 1) * MIB}"

    def layout(self, num_hosts):
        sh(self.bin, "direct", "format", "--lockspace", "T", "--path", self.dev, "--resources", str(self.args.resources),
           "--max-hosts", str(num_hosts), "--io-timeout", str(self.args.io_timeout), "--force")

    def run_dir(self, host):
        return os.path.join(self.work, f"tenure-{host}")

    def start(self, host):
        p = start_tenure_daemon(self.bin, self.run_dir(host), self.args.io_timeout, f"bench{host}", "--watchdog-fire", "60")
        self.daemons[host] = p
        return p.pid

    def client(self, host, *args, check=True):
        return sh(self.bin, "client", *args, "--run-dir", self.run_dir(host), check=check)

    def join(self, host):
        start = time.monotonic()
        self.client(host, "add-lockspace", "-s", self.lockspace(host))
        return time.monotonic() - start

    def join_and_idle(self, host):
        """`tenure bench lockspace`: the join, then renewals by the daemon's counters and the device's."""
        out = sh(self.bin, "bench", "lockspace", "-s", self.lockspace(host), "--idle-seconds", str(self.args.idle_seconds),
                 "--stay", "--json", "--run-dir", self.run_dir(host)).stdout
        rows = {r["measure"]: r for r in map(json.loads, out.splitlines())}
        result = {"join_s": rows["join"]["seconds"]}
        if "idle_renewal" in rows:
            r = rows["idle_renewal"]
            result.update(idle_read_bytes_per_renewal=r["device_bytes_read_per_renewal"],
                          idle_write_bytes_per_renewal=r["device_bytes_written_per_renewal"],
                          idle_ios_per_renewal=r["device_ios_per_renewal"],
                          engine_renewal_bytes_read=r["engine_bytes_read_per_renewal"],
                          engine_renewal_bytes_written=r["engine_bytes_written_per_renewal"])
        return result

    def leave(self, host):
        self.client(host, "rem-lockspace", "T", check=False)

    def ask_to_stop(self, host):
        self.client(host, "shutdown", "--force", check=False)

    def bench(self, clients, cycles_each):
        out = sh(self.bin, "bench", "acquire", "--lockspace", "T", "--path", self.dev, "--resources", str(self.args.resources),
                 "--clients", str(clients), "--cycles", str(cycles_each), "--run-dir", self.run_dir(1), "--json").stdout
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        # The first line is the device's floor: a cycle's ten I/Os back to back.
        self.floor = next((l for l in lines if l.get("floor")), None)
        # The one-client run is followed by where its cycles went (a
        # "breakdown" line): the measurement is the last line of neither kind.
        return [l for l in lines if not l.get("floor") and not l.get("breakdown")][-1]

    def cycles(self):
        # As for sanlock: --cycles cycles by one client, then spread over the clients.
        one = self.bench(1, self.args.cycles)
        self.p50, self.p99 = one["p50_ms"], one["p99_ms"]
        floor = self.floor
        many = self.bench(self.args.clients, max(1, self.args.cycles // self.args.clients))
        self.floor = floor
        return one["seconds"] / one["cycles"] * 1000, one["cycles_per_second"], many["cycles_per_second"]

    def holder(self, host, i):
        """A process holding resource i through the daemon of `host`."""
        p = subprocess.Popen([self.bin, "client", "hold", "-r", self.resource(i), "--run-dir", self.run_dir(host)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        p.stdout.readline()
        return p

    def request_force(self, host, i):
        self.client(host, "request", "-r", self.resource(i), "--force")

    def try_acquire(self, host, i, pid):
        return self.client(host, "acquire", "--pid", str(pid), "-r", self.resource(i), check=False).returncode == 0


class Sanlock(Implementation):
    name = "sanlock"
    py = "/usr/bin/python3"

    def __init__(self, args, work):
        self.args, self.dev, self.work = args, args.device, work
        self.shim = os.path.join(work, "setrlimit-shim.so")
        here = os.path.dirname(os.path.abspath(__file__))
        sh("cc", "-shared", "-fPIC", "-o", self.shim, os.path.join(here, "bench", "setrlimit-shim.c"), "-ldl")
        self.daemons = {}

    def offset(self, i):
        return SANLOCK_AREA + (i + 1) * MIB

    def layout(self, num_hosts):
        # The same layout as Tenure's: sanlock's format, num_hosts included.
        sh(self.args.tenure, "direct", "format", "--lockspace", "S", "--path", self.dev, "--offset", str(SANLOCK_AREA),
           "--resources", str(self.args.resources), "--max-hosts", str(num_hosts), "--io-timeout", str(self.args.io_timeout), "--force")

    def env(self, host):
        e = dict(os.environ)
        e["SANLOCK_RUN_DIR"] = os.path.join(self.work, f"sanlock-{host}")
        return e

    def start(self, host):
        run = self.env(host)["SANLOCK_RUN_DIR"]
        os.makedirs(run, exist_ok=True)
        # A socket left by a daemon that was killed would look like a started one.
        if os.path.exists(os.path.join(run, "sanlock.sock")):
            os.unlink(os.path.join(run, "sanlock.sock"))
        env = self.env(host)
        env["LD_PRELOAD"] = self.shim
        log = open(os.path.join(run, "daemon.log"), "w")
        p = subprocess.Popen(["sanlock", "daemon", "-D", "-w", "0", "-l", "0", "-h", "0", "-U", "root", "-G", "root",
                              "-e", f"bench{host}"], env=env, stdout=log, stderr=log, start_new_session=True)
        self.daemons[host] = p
        wait_for(lambda: os.path.exists(os.path.join(run, "sanlock.sock")), 10, "sanlock's socket")
        time.sleep(0.2)
        return p.pid

    def python(self, host, code, check=True):
        return sh(self.py, "-c", "import sanlock, sys, time, os\n" + code, env=self.env(host), check=check)

    def join(self, host):
        start = time.monotonic()
        self.python(host, f"sanlock.add_lockspace(b'S', {host}, {self.dev!r}, {SANLOCK_AREA}, iotimeout={self.args.io_timeout})")
        return time.monotonic() - start

    def leave(self, host):
        self.python(host, f"sanlock.rem_lockspace(b'S', {host}, {self.dev!r}, {SANLOCK_AREA})", check=False)

    def ask_to_stop(self, host):
        sh("sanlock", "client", "shutdown", "-f", "1", env=self.env(host), check=False)

    def cycles(self):
        n, k = self.args.cycles, self.args.clients
        per = max(1, n // k)
        code = f"""
dev, n, k, per = {self.dev!r}, {per}, {k}, {per}
offs = [{SANLOCK_AREA} + (i + 1) * {MIB} for i in range({self.args.resources})]
times = []
def run(i, count, fd):
    for _ in range(count):
        t0 = time.perf_counter()
        sanlock.acquire(b'S', b'R%d' % i, [(dev, offs[i])], slkfd=fd)
        sanlock.release(b'S', b'R%d' % i, [(dev, offs[i])], slkfd=fd)
        times.append(time.perf_counter() - t0)
fd = sanlock.register()
t = time.perf_counter(); run(0, n, fd); one = time.perf_counter() - t
ordered = sorted(times)
p50, p99 = ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
t = time.perf_counter()
pids = []
for c in range(k):
    pid = os.fork()
    if pid == 0:
        try:
            run(c, per, sanlock.register())
        finally:
            os._exit(0)
    pids.append(pid)
for p in pids: os.waitpid(p, 0)
many = time.perf_counter() - t
print(one / n * 1000, n / one, k * per / many, p50, p99)
"""
        ms, one_rate, many_rate, self.p50, self.p99 = map(float, self.python(1, code).stdout.split())
        return ms, one_rate, many_rate

    def join_and_idle(self, host):
        result = {"join_s": self.join(host)}
        if self.args.idle_seconds > 0:
            result.update(idle_traffic(self.dev, self.args.idle_seconds))
        return result

    def holder(self, host, i):
        code = f"""
fd = sanlock.register()
sanlock.acquire(b'S', b'R{i}', [({self.dev!r}, {self.offset(i)})], slkfd=fd)
print('held', flush=True)
time.sleep(100000)
"""
        p = subprocess.Popen([self.py, "-c", "import sanlock, sys, time, os\n" + code], env=self.env(host),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        p.stdout.readline()
        return p

    def request_force(self, host, i):
        self.python(host, f"sanlock.request(b'S', b'R{i}', [({self.dev!r}, {self.offset(i)})], action=sanlock.REQ_FORCE)")

    def try_acquire(self, host, i, pid):
        r = self.python(host, f"""
fd = sanlock.register()
try:
    sanlock.acquire(b'S', b'R{i}', [({self.dev!r}, {self.offset(i)})], slkfd=fd)
except sanlock.SanlockException:
    sys.exit(1)
print('ok', flush=True)
time.sleep(0.5)
""", check=False)
        return r.returncode == 0


def measure_basic(impl, args):
    out = {}
    pid = impl.start(1)
    try:
        out.update(impl.join_and_idle(1))
        out["ms_per_cycle"], out["cycles_per_s_1"], out[f"cycles_per_s_{args.clients}"] = impl.cycles()
        out["p50_ms_1"], out["p99_ms_1"] = impl.p50, impl.p99
        floor = getattr(impl, "floor", None)
        if floor:
            # The device floor, measured by Tenure's bench on the same device in the
            # same run; both implementations' cycles are compared with it.
            out["floor_p50_ms"], out["floor_p99_ms"] = floor["p50_ms"], floor["p99_ms"]
            out["floor_ratio"] = out["ms_per_cycle"] / floor["p50_ms"]
        out["rss_kib"] = rss_kib(pid)
        impl.leave(1)
    finally:
        impl.stop(1)
    return out


def idle_traffic(dev, seconds):
    """The device's traffic per renewal over `seconds` of an idle sanlock: it
    writes one sector per renewal and nothing else, so its writes count them."""
    b0 = block_stat(dev)
    time.sleep(seconds)
    d = diff(b0, block_stat(dev))
    renewals = max(d["writes"], 1)
    return {"idle_read_bytes_per_renewal": d["read_bytes"] / renewals, "idle_write_bytes_per_renewal": d["write_bytes"] / renewals,
            "idle_ios_per_renewal": (d["reads"] + d["writes"]) / renewals}


def measure_takeover(impl, args):
    """Forced request until the requester holds; daemon crash until another host holds."""
    out = {}
    impl.start(1)
    impl.start(2)
    sleeper = subprocess.Popen(["sleep", "100000"])
    try:
        impl.join(1)
        impl.join(2)
        holder = impl.holder(1, 0)
        start = time.monotonic()
        impl.request_force(2, 0)
        wait_for(lambda: impl.try_acquire(2, 0, sleeper.pid), 300, f"{impl.name}: the requester to hold R0", step=0.1)
        out["forced_request_s"] = time.monotonic() - start
        holder.kill()
        holder2 = impl.holder(1, 1)
        start = time.monotonic()
        impl.crash(1)
        wait_for(lambda: impl.try_acquire(2, 1, sleeper.pid), 600, f"{impl.name}: host 2 to take R1 over", step=0.5)
        out["crash_takeover_s"] = time.monotonic() - start
        holder2.kill()
        impl.leave(2)
    finally:
        sleeper.kill()
        for host in list(impl.daemons):
            impl.stop(host)
    return out


def main():
    ap = tool_arguments(__doc__)
    ap.add_argument("--num-hosts", default="2000,1000,250,64")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--resources", type=int, default=64)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=640)
    ap.add_argument("--io-timeout", type=int, default=10)
    ap.add_argument("--idle-seconds", type=int, default=0)
    ap.add_argument("--takeover", action="store_true")
    ap.add_argument("--json", help="also write every measurement here")
    args = ap.parse_args()
    impls = [Tenure(args, args.work), Sanlock(args, args.work)]
    results = []
    for num_hosts in [int(x) for x in args.num_hosts.split(",")]:
        for impl in impls:
            impl.layout(num_hosts)
        for rnd in range(args.rounds):
            order = impls if rnd % 2 == 0 else impls[::-1]
            for impl in order:
                print(f"num_hosts {num_hosts}, round {rnd + 1}: {impl.name}…", file=sys.stderr, flush=True)
                r = measure_basic(impl, args)
                r.update(impl=impl.name, num_hosts=num_hosts, round=rnd + 1)
                print(json.dumps(r), file=sys.stderr, flush=True)
                results.append(r)
        if args.takeover and num_hosts == int(args.num_hosts.split(",")[0]):
            # Takeover times do not depend on the layout: measured once.
            for impl in impls:
                print(f"num_hosts {num_hosts}: {impl.name} forced request and crash takeover…", file=sys.stderr, flush=True)
                r = measure_takeover(impl, args)
                r.update(impl=impl.name, num_hosts=num_hosts, round=0)
                print(json.dumps(r), file=sys.stderr, flush=True)
                results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    print_table(results, args)


ROWS = [  # key, label, unit, lower is better
    ("ms_per_cycle", "acquire + release, 1 client", "ms", True),
    ("p50_ms_1", "acquire + release, 1 client, p50", "ms", True),
    ("p99_ms_1", "acquire + release, 1 client, p99", "ms", True),
    ("floor_p50_ms", "device floor: the cycle's 10 I/Os back to back, p50", "ms", True),
    ("floor_ratio", "Tenure's cycle ÷ the device floor", "×", True),
    ("cycles_per_s_1", "cycles/s, 1 client", "/s", False),
    ("cycles_per_s_{clients}", "cycles/s, {clients} clients", "/s", False),
    ("join_s", "join a lockspace", "s", True),
    ("idle_read_bytes_per_renewal", "device bytes read per renewal (idle)", "B", True),
    ("idle_write_bytes_per_renewal", "device bytes written per renewal (idle)", "B", True),
    ("engine_renewal_bytes_read", "engine counters: bytes read per renewal", "B", True),
    ("engine_renewal_bytes_written", "engine counters: bytes written per renewal", "B", True),
    ("forced_request_s", "forced request until requester holds", "s", True),
    ("crash_takeover_s", "host crash until another host holds", "s", True),
    ("rss_kib", "daemon resident memory after the bench", "KiB", True),
]


def print_table(results, args):
    print(f"\nio_timeout {args.io_timeout} s, watchdog fire time 60 s, {args.rounds} rounds (median), "
          f"{args.resources} resources, device {args.device}")
    print(f"| num_hosts | measure | tenure | sanlock | ratio |")
    print(f"|---|---|---|---|---|")
    for num_hosts in sorted({r["num_hosts"] for r in results}, reverse=True):
        for key, label, unit, lower in ROWS:
            key = key.format(clients=args.clients)
            label = label.format(clients=args.clients)
            vals = {}
            for impl in ("tenure", "sanlock"):
                xs = [r[key] for r in results if r["impl"] == impl and r["num_hosts"] == num_hosts and key in r]
                if xs:
                    vals[impl] = statistics.median(xs)
            if not vals:
                continue
            t, s = vals.get("tenure"), vals.get("sanlock")
            ratio = "—"
            if t is not None and s is not None and t > 0 and s > 0:
                ratio = f"{s / t:.1f}×" if lower else f"{t / s:.1f}×"
            fmt = lambda v: "—" if v is None else (f"{v:.3f}" if v < 10 else f"{v:,.0f}")
            print(f"| {num_hosts} | {label} ({unit}) | {fmt(t)} | {fmt(s)} | {ratio} |")


if __name__ == "__main__":
    main()
