#!/usr/bin/env python3
"""Three QEMU hosts share one disk; a witness on the host judges each run.

Each scenario starts from a fresh disk image and three fresh virtual
machines (hosts 1, 2 and 3, called A, B and C). Every host runs the packaged
tenure daemon with an emulated i6300esb watchdog (reset action) and reaches
the disk through a path of its own: a qemu-nbd server on the image, which
the scenario can cut (the server dies: every I/O of that host fails) and
bring back. Each host runs a writer that acquires lease R and, while it
holds it, appends records (host id, lver, sequence) to its own log in the
data area. A's writer gets the lease first; B's and C's wait for it.

The witness reads the image on the host (O_DIRECT) every 20 ms: the
lockspace's host slots, R's leader and the logs. It notes when each record
and each renewal first showed, and QMP tells when a VM stopped, resumed or
was reset. The VMs' own words (their consoles) are kept for reading, never
judged.

Timeline of one run (N = io_timeout, W = watchdog fire time):
  T   A's last renewal the witness saw land before the fault
  B   the first record of a later lver (B's or C's): the lease changed hands
Gates:
  storage-loss  no record of A lands after T + 8N (the path is back from
                T + 8N + 1 s on, so a holder that was not killed shows), and
                B - T >= 8N + W
  storage-hang  A's I/O hangs (its path's server is stopped): the writer is
                stuck in the kernel and cannot be killed, so the watchdog must
                reset A by T + 8N + W (+ 1 s); no record of A after T + 8N;
                B - T >= 8N + W
  frozen        A's last record lands within 2N (+ 1 s) of its resume: the
                daemon saw it was frozen and fenced at its first renewal;
                B - T >= 8N + W. The records A wrote after resuming are
                counted and reported (the window docs/reliability.md explains)
  crash         B - T >= 8N + W
  watchdog      the watchdog reset A within W (+ 1 s) of its daemon's SIGKILL,
                no record of A lands after B, and B - T >= 8N + W
  restart       A's daemon is SIGKILLed and started again at once (as
                systemd's Restart= does) while A's writer holds R: no record
                of A lands after B, and B - T >= 8N + W. The new daemon must
                kill the writer before it pets the watchdog (or not pet, and
                let it reset A); one that pets at once leaves the writer
                writing beside B.
Broken variants (--broken-fence NAME), which must FAIL: storage-loss with
A's daemon skipping its holder and petting on; restart with A's daemon
petting at once after the restart (rearm-after-restart).
"""
import argparse
import json
import mmap
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SECTOR = 512
LOCKSPACE_AT = 0
RESOURCE_AT = 1 << 20
DATA_AT = 8 << 20
LOG_BYTES = 4 << 20
LOG_RECORDS = LOG_BYTES // SECTOR
DISK_BYTES = 32 << 20
HOSTS = 3
NAMES = {1: "A", 2: "B", 3: "C"}
POLL = 0.02
# The witness polls every POLL and a renewal's write lands a little after it
# starts: a takeover measured from the landing may look this much early.
SLACK = 0.25


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Witness(threading.Thread):
    """Reads the shared image from the host, independently of the VMs."""

    def __init__(self, image, t0):
        super().__init__(daemon=True)
        self.fd = os.open(image, os.O_RDONLY | os.O_DIRECT)
        self.buf = mmap.mmap(-1, 1 << 16)
        self.t0 = t0
        self.records = {h: [] for h in range(1, HOSTS + 1)}   # (seen, lver, seq)
        self.renewals = {h: [] for h in range(1, HOSTS + 1)}  # (seen, timestamp)
        self.leader = []                                      # (seen, owner, lver, timestamp)
        self.next = {h: 0 for h in range(1, HOSTS + 1)}
        self.lock = threading.Lock()
        self.stopping = False

    def read(self, offset, length):
        view = memoryview(self.buf)[:length]
        n = os.preadv(self.fd, [view], offset)
        if n != length:
            raise IOError(f"witness: short read at {offset}")
        return bytes(view)

    def look(self):
        now = time.monotonic() - self.t0
        slots = self.read(LOCKSPACE_AT, HOSTS * SECTOR)
        leader = self.read(RESOURCE_AT, SECTOR)
        logs = {h: self.read(DATA_AT + (h - 1) * LOG_BYTES + (self.next[h] % LOG_RECORDS) * SECTOR, 32 * SECTOR)
                for h in self.records if (self.next[h] % LOG_RECORDS) + 32 <= LOG_RECORDS}
        with self.lock:
            for h in self.renewals:
                ts = struct.unpack_from("<Q", slots, (h - 1) * SECTOR + 152)[0]
                if not self.renewals[h] or self.renewals[h][-1][1] != ts:
                    self.renewals[h].append((now, ts))
            owner, _, lver = struct.unpack_from("<QQQ", leader, 32)
            ts = struct.unpack_from("<Q", leader, 152)[0]
            if not self.leader or self.leader[-1][1:] != (owner, lver, ts):
                self.leader.append((now, owner, lver, ts))
            for h, block in logs.items():
                for i in range(32):
                    record = block[i * SECTOR:(i + 1) * SECTOR]
                    if record[:8] != b"TNRWRITE":
                        break
                    host, lver, seq = struct.unpack_from("<QQQ", record, 8)
                    if host != h or seq != self.next[h]:
                        break
                    self.records[h].append((now, lver, seq))
                    self.next[h] += 1

    def run(self):
        while not self.stopping:
            self.look()
            time.sleep(POLL)

    def stop(self):
        self.stopping = True
        self.join(timeout=2)
        os.close(self.fd)

    # What the witness saw.
    def first_record(self, host):
        with self.lock:
            return self.records[host][0] if self.records[host] else None

    def takeover(self, after_lver):
        """The first record of another host with a later lver."""
        with self.lock:
            found = [(r[0], h, r[1]) for h in self.records if h != 1 for r in self.records[h] if r[1] > after_lver]
        return min(found) if found else None

    def last_renewal_before(self, host, t):
        with self.lock:
            seen = [s for s, _ in self.renewals[host] if s <= t]
        return seen[-1] if seen else None

    def records_of(self, host, after=None, lver=None):
        with self.lock:
            return [r for r in self.records[host] if (after is None or r[0] > after) and (lver is None or r[1] == lver)]


class Qmp:
    """A QMP connection: commands, and events with the host's time."""

    def __init__(self, path, t0):
        self.t0 = t0
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb")
        json.loads(self.file.readline())
        self.replies = queue.Queue()
        self.events = []
        threading.Thread(target=self.read_loop, daemon=True).start()
        self.command("qmp_capabilities")

    def read_loop(self):
        for line in self.file:
            message = json.loads(line)
            if "event" in message:
                self.events.append((time.monotonic() - self.t0, message["event"], message.get("data", {})))
            else:
                self.replies.put(message)

    def command(self, name, **arguments):
        self.file.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        self.file.flush()
        reply = self.replies.get(timeout=10)
        if "error" in reply:
            raise RuntimeError(f"QMP {name}: {reply['error']}")
        return reply.get("return")

    def first_event(self, names, after=0.0):
        for t, name, data in list(self.events):
            if name in names and t >= after:
                return t, name, data
        return None


class Host:
    """One VM: its storage path (qemu-nbd), QEMU, QMP and control port."""

    def __init__(self, rig, host):
        self.rig = rig
        self.host = host
        self.name = NAMES[host]
        self.dir = os.path.join(rig.run_dir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.nbd_socket = os.path.join(self.dir, "path.sock")
        self.path = None
        self.qemu = None

    def start_path(self):
        if os.path.exists(self.nbd_socket):
            os.unlink(self.nbd_socket)
        opts = (f"driver=raw,file.driver=file,file.filename={self.rig.image},file.locking=off,"
                f"file.aio=native,cache.direct=on")
        self.path = subprocess.Popen(["qemu-nbd", "--image-opts", opts, f"--socket={self.nbd_socket}",
                                      "--persistent", "--shared=16"],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "nbd.log"), "a"))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.nbd_socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: qemu-nbd did not start")
            time.sleep(0.02)

    def cut_path(self):
        self.path.kill()
        self.path.wait()

    def start(self):
        self.start_path()
        accel = self.rig.accel
        args = ["qemu-system-x86_64", "-machine", f"q35,accel={accel}", "-m", "768", "-smp", "1",
                "-kernel", self.rig.kernel, "-initrd", self.rig.initrd,
                "-append", f"console=ttyS0 tenure.host={self.host} panic=-1 quiet",
                "-drive", (f"driver=nbd,server.type=unix,server.path={self.nbd_socket},if=none,id=shared,"
                           "cache.direct=on,rerror=report,werror=report"),
                "-device", "virtio-blk-pci,drive=shared",
                "-device", "i6300esb", "-action", "watchdog=reset",
                "-serial", f"file:{os.path.join(self.dir, 'console.log')}",
                "-chardev", f"socket,id=control,path={os.path.join(self.dir, 'control.sock')},server=on,wait=off",
                "-serial", "chardev:control",
                "-qmp", f"unix:{os.path.join(self.dir, 'qmp.sock')},server=on,wait=off",
                "-display", "none", "-monitor", "none", "-nodefaults", "-vga", "none"]
        if accel == "kvm":
            args[5:5] = ["-cpu", "host,-arch-capabilities"]
        self.qemu = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "qemu.log"), "w"))
        self.qmp = Qmp(os.path.join(self.dir, "qmp.sock"), self.rig.t0)
        self.control = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.control.connect(os.path.join(self.dir, "control.sock"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.control.settimeout(0.2)
        self.pending = b""

    def send(self, line):
        self.control.sendall(line.encode() + b"\n")

    def reply(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\n" in self.pending:
                line, _, self.pending = self.pending.partition(b"\n")
                text = line.decode(errors="replace").strip()
                if text.startswith("@@ "):
                    return text[3:]
            try:
                self.pending += self.control.recv(4096)
            except socket.timeout:
                pass
        return None

    def command(self, line, timeout=60):
        self.send(line)
        name = line.split()[0]
        deadline = time.monotonic() + timeout
        # Answers name their command ("ok NAME …", "err NAME: …"): one left
        # over from an earlier command (wait_ready's pings) is skipped.
        while True:
            answer = self.reply(max(0.0, deadline - time.monotonic()))
            if answer is None or answer.split()[1:2] == [name] or answer.split()[1:2] == [name + ":"]:
                break
        if answer is None or not answer.startswith("ok"):
            raise RuntimeError(f"{self.name}: `{line}` answered {answer!r}; see {self.dir}/console.log")
        return answer

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("ps")
            answer = self.reply(1.0)
            if answer and (answer.startswith("ok ps") or answer.startswith("ready")):
                # Drain a "ready" that came before the answer to our ps.
                self.reply(0.3)
                return
        raise RuntimeError(f"{self.name}: the VM did not come up in {timeout} s; see {self.dir}/console.log")

    def stop(self):
        for p in (self.qemu, self.path):
            if p and p.poll() is None:
                p.kill()
                p.wait()


class Rig:
    def __init__(self, args, scenario):
        self.args = args
        self.scenario = scenario
        self.n = args.io_timeout
        self.w = args.watchdog_fire
        self.accel = args.accel
        self.run_dir = os.path.join(args.work, "runs", scenario)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.makedirs(self.run_dir)
        self.image = os.path.join(self.run_dir, "shared.img")
        self.kernel = os.path.join(args.work, "vmlinuz")
        self.initrd = os.path.join(args.work, "initrd.gz")
        self.tenure = os.path.join(args.work, "tenure")
        self.t0 = time.monotonic()
        self.hosts = {}
        self.witness = None

    @property
    def now(self):
        return time.monotonic() - self.t0

    def resource(self):
        return f"LS:R:/dev/vda:{RESOURCE_AT}"

    def lay_out_disk(self):
        with open(self.image, "wb") as f:
            f.truncate(DISK_BYTES)
        for area in (["-s", f"LS:0:{self.image}:{LOCKSPACE_AT}", "--io-timeout", str(self.n)],
                     ["-r", f"LS:R:{self.image}:{RESOURCE_AT}", "--max-hosts", "8"]):
            subprocess.run([self.tenure, "direct", "init", *area], check=True, stdout=subprocess.DEVNULL)

    def bring_up(self, inject=None):
        self.lay_out_disk()
        self.witness = Witness(self.image, self.t0)
        self.witness.start()
        for h in range(1, HOSTS + 1):
            self.hosts[h] = Host(self, h)
            self.hosts[h].start()
        for host in self.hosts.values():
            host.wait_ready()
        log(f"{self.scenario}: three VMs up at {self.now:.1f} s ({self.accel})")
        for h, host in self.hosts.items():
            faults = f" inject={inject}" if inject and h == 1 else ""
            host.command(f"start {self.n} {self.w}{faults} --lock-memory off --realtime on")
        for h, host in self.hosts.items():
            host.send(f"join LS:{h}:/dev/vda:{LOCKSPACE_AT}")
        for host in self.hosts.values():
            answer = host.reply(60)
            if not answer or not answer.startswith("ok"):
                raise RuntimeError(f"{host.name}: join answered {answer!r}")
        self.hosts[1].command(f"write {self.resource()} {DATA_AT} 1")
        first = self.wait_for(lambda: self.witness.first_record(1), 30, "A's first record")
        self.lver_a = first[1]
        for h in (2, 3):
            self.hosts[h].command(f"write {self.resource()} {DATA_AT} {h}")
        time.sleep(3)
        log(f"{self.scenario}: A holds R at lver {self.lver_a}, B and C wait for it ({self.now:.1f} s)")

    def wait_for(self, probe, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(POLL)
        raise RuntimeError(f"{self.scenario}: no {what} within {timeout} s")

    def takeover(self, timeout):
        return self.wait_for(lambda: self.witness.takeover(self.lver_a), timeout, "takeover by B or C")

    def tear_down(self):
        for host in self.hosts.values():
            host.stop()
        if self.witness:
            self.witness.stop()

    @property
    def host_dead(self):
        return 8 * self.n + self.w


def result(rig, gates, **row):
    row["scenario"] = rig.scenario
    row["gates"] = gates
    row["passed"] = all(ok for _, ok in gates)
    return row


def storage_loss(rig):
    a = rig.hosts[1]
    t_fault = rig.now
    a.cut_path()
    last = rig.witness.last_renewal_before(1, t_fault)
    log(f"storage-loss: A's path cut at {t_fault:.2f} s; its last renewal landed at {last:.2f} s")
    restore_at = last + 8 * rig.n + 1.0
    time.sleep(max(0.0, restore_at - rig.now))
    a.start_path()
    t_restore = rig.now
    log(f"storage-loss: A's path back at {t_restore:.2f} s (its holders were due dead at {last + 8 * rig.n:.2f} s)")
    seen, taker, lver = rig.takeover(rig.host_dead + 30)
    time.sleep(5)
    late = rig.witness.records_of(1, after=last + 8 * rig.n)
    after_takeover = rig.witness.records_of(1, after=seen)
    reset = a.qmp.first_event({"RESET", "WATCHDOG"}, after=t_fault)
    gates = [(f"no record of A after T + 8N ({len(late)})", not late),
             (f"no record of A after the takeover ({len(after_takeover)})", not after_takeover),
             (f"takeover - T = {seen - last:.2f} s >= 8N + W = {rig.host_dead} s", seen - last >= rig.host_dead - SLACK)]
    fenced = f"by {t_restore:.2f} (path back)" if not late else "never (A wrote on)"
    held = late[-1][0] if late else last + 8 * rig.n
    return result(rig, gates, held_until=held, fenced=fenced,
                  reset=f"{reset[0]:.2f}" if reset else "-", acquired=seen, by=NAMES[taker], late=len(late), T=last)


def storage_hang(rig):
    a = rig.hosts[1]
    t_fault = rig.now
    a.path.send_signal(signal.SIGSTOP)
    last = rig.witness.last_renewal_before(1, t_fault)
    log(f"storage-hang: A's path stopped at {t_fault:.2f} s (its I/O hangs); its last renewal landed at {last:.2f} s")
    fired = rig.wait_for(lambda: a.qmp.first_event({"WATCHDOG"}, after=t_fault), rig.host_dead + 10, "watchdog reset of A")
    # The writer sits in the kernel (D state) behind a request the stopped
    # server holds: SIGKILL cannot end it, so the daemon stops petting. The
    # reset waits for that request; failing the path ends it unwritten.
    a.cut_path()
    log(f"storage-hang: A's watchdog fired at {fired[0]:.2f} s (T + {fired[0] - last:.2f} s); its path failed after it")
    a.start_path()
    seen, taker, lver = rig.takeover(rig.host_dead + 30)
    time.sleep(3)
    late = rig.witness.records_of(1, after=last + 8 * rig.n)
    bound = rig.host_dead + 1.0
    gates = [(f"the watchdog reset A at T + {fired[0] - last:.2f} s (<= 8N + W + 1 s = {bound} s)", fired[0] - last <= bound),
             (f"no record of A after T + 8N ({len(late)})", not late),
             (f"takeover - T = {seen - last:.2f} s >= 8N + W = {rig.host_dead} s", seen - last >= rig.host_dead - SLACK)]
    return result(rig, gates, held_until=last + 8 * rig.n, fenced=f"{fired[0]:.2f} (reset)", reset=f"{fired[0]:.2f}",
                  acquired=seen, by=NAMES[taker], late=len(late), T=last)


def frozen(rig):
    a = rig.hosts[1]
    t_stop = rig.now
    a.qmp.command("stop")
    last = rig.witness.last_renewal_before(1, t_stop + 1)
    log(f"frozen: A stopped at {t_stop:.2f} s; its last renewal landed at {last:.2f} s")
    seen, taker, lver = rig.takeover(rig.host_dead + 30)
    time.sleep(max(0.0, t_stop + rig.host_dead + 4 - rig.now))
    t_resume = rig.now
    a.qmp.command("cont")
    log(f"frozen: {NAMES[taker]} took R at {seen:.2f} s (lver {lver}); A resumed at {t_resume:.2f} s")
    time.sleep(4 * 2 * rig.n + 4)
    after_resume = rig.witness.records_of(1, after=t_resume)
    last_a = after_resume[-1][0] if after_resume else t_resume
    bound = 2 * rig.n + 1.0
    gates = [(f"A's writes stopped {last_a - t_resume:.2f} s after its resume (<= 2N + 1 s = {bound} s)", last_a - t_resume <= bound),
             (f"takeover - T = {seen - last:.2f} s >= 8N + W = {rig.host_dead} s", seen - last >= rig.host_dead - SLACK)]
    return result(rig, gates, held_until=last_a, fenced=f"{last_a:.2f}", reset="-", acquired=seen, by=NAMES[taker],
                  late=len(after_resume), T=last, note=f"{len(after_resume)} records of A landed after its resume, all before {last_a:.2f} s")


def crash(rig):
    a = rig.hosts[1]
    t_reset = rig.now
    a.qmp.command("system_reset")
    last = rig.witness.last_renewal_before(1, t_reset)
    log(f"crash: A reset at {t_reset:.2f} s; its last renewal landed at {last:.2f} s")
    seen, taker, lver = rig.takeover(rig.host_dead + 30)
    after = rig.witness.records_of(1, after=t_reset + 0.1)
    gates = [(f"takeover - T = {seen - last:.2f} s >= 8N + W = {rig.host_dead} s", seen - last >= rig.host_dead - SLACK),
             (f"no record of A after its reset ({len(after)})", not after)]
    return result(rig, gates, held_until=t_reset, fenced=f"{t_reset:.2f} (reset)", reset=f"{t_reset:.2f}",
                  acquired=seen, by=NAMES[taker], late=len(after), T=last)


def watchdog(rig):
    a = rig.hosts[1]
    t_kill = rig.now
    a.command("kill-daemon")
    last = rig.witness.last_renewal_before(1, rig.now)
    log(f"watchdog: A's daemon SIGKILLed at {t_kill:.2f} s; its writer runs on")
    fired = rig.wait_for(lambda: a.qmp.first_event({"WATCHDOG", "RESET"}, after=t_kill), rig.w + 10, "watchdog reset of A")
    log(f"watchdog: A reset by its watchdog at {fired[0]:.2f} s")
    seen, taker, lver = rig.takeover(rig.host_dead + 30)
    after = rig.witness.records_of(1, after=seen)
    last_a = rig.witness.records_of(1)[-1][0]
    gates = [(f"reset {fired[0] - t_kill:.2f} s after the daemon died (<= W + 1 s = {rig.w + 1} s)", fired[0] - t_kill <= rig.w + 1.0),
             (f"no record of A after the takeover ({len(after)})", not after),
             (f"takeover - T = {seen - last:.2f} s >= 8N + W = {rig.host_dead} s", seen - last >= rig.host_dead - SLACK)]
    return result(rig, gates, held_until=last_a, fenced=f"{fired[0]:.2f} (reset)", reset=f"{fired[0]:.2f}",
                  acquired=seen, by=NAMES[taker], late=len(after), T=last)


def restart(rig):
    a = rig.hosts[1]
    t_kill = rig.now
    answer = a.command("restart-daemon")
    last = rig.witness.last_renewal_before(1, t_kill)
    log(f"restart: A's daemon SIGKILLed at {t_kill:.2f} s and started again ({answer}, {rig.now:.2f} s); its last renewal landed at {last:.2f} s")
    seen, taker, lver = rig.takeover(rig.host_dead + 30)
    time.sleep(3)
    after = rig.witness.records_of(1, after=seen)
    records = rig.witness.records_of(1)
    last_a = records[-1][0] if records else t_kill
    reset = a.qmp.first_event({"WATCHDOG", "RESET"}, after=t_kill)
    gates = [(f"no record of A after the takeover ({len(after)})", not after),
             (f"takeover - T = {seen - last:.2f} s >= 8N + W = {rig.host_dead} s", seen - last >= rig.host_dead - SLACK)]
    fenced = f"{reset[0]:.2f} (reset)" if reset and reset[0] <= last_a + 1 else (f"by {last_a:.2f}" if not after else "never (A wrote on)")
    return result(rig, gates, held_until=last_a, fenced=fenced, reset=f"{reset[0]:.2f}" if reset else "-",
                  acquired=seen, by=NAMES[taker], late=len(after), T=last)


SCENARIOS = {"storage-loss": storage_loss, "storage-hang": storage_hang, "frozen": frozen, "crash": crash, "watchdog": watchdog,
             "restart": restart}
# The daemon bugs (TENURE_INJECT_BUG) each broken variant runs A's daemon with.
BROKEN = {"storage-loss": "fence-skips-a-holder,keep-petting-after-loss", "restart": "rearm-after-restart"}


def run_one(args, name, inject=None):
    rig = Rig(args, name if not inject else f"{name}-broken-fence")
    try:
        rig.bring_up(inject=inject)
        row = SCENARIOS[name](rig)
    except Exception as error:  # a rig failure is a failed scenario, with its reason
        row = {"scenario": rig.scenario, "passed": False, "gates": [(f"rig: {error}", False)]}
    finally:
        rig.tear_down()
    for text, ok in row["gates"]:
        log(f"{row['scenario']}: {'ok  ' if ok else 'FAIL'} {text}")
    return row


def table(rows):
    head = ("scenario", "T (A's last renewal)", "held by A until", "fenced at", "reset at", "taken at", "by", "writes after fencing", "result")
    lines = [head]
    for r in rows:
        if "acquired" not in r:
            lines.append((r["scenario"], "-", "-", "-", "-", "-", "-", "-", "FAIL (rig)"))
            continue
        late = r["late"]
        lines.append((r["scenario"], f"{r['T']:.2f}", f"{r['held_until']:.2f}", r["fenced"], r["reset"], f"{r['acquired']:.2f}",
                      r["by"], f"{late}" + (" (after resume)" if r["scenario"].startswith("frozen") else ""),
                      "pass" if r["passed"] else "FAIL"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="the folder build.sh filled")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only these (repeat)")
    parser.add_argument("--broken-fence", choices=sorted(BROKEN),
                        help="run this scenario with A's daemon deliberately broken (storage-loss: never kills its holders and keeps "
                             "petting; restart: pets at once after a restart): must FAIL")
    parser.add_argument("--io-timeout", type=int, default=1)
    parser.add_argument("--watchdog-fire", type=int, default=4)
    parser.add_argument("--accel", default="tcg", choices=["tcg", "kvm"])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    # QEMU and qemu-nbd want absolute socket and image paths.
    args.work = os.path.abspath(args.work)
    if args.broken_fence:
        rows = [run_one(args, args.broken_fence, inject=BROKEN[args.broken_fence])]
    else:
        rows = [run_one(args, name) for name in (args.scenario or list(SCENARIOS))]
    print()
    table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    sys.exit(0 if all(r["passed"] for r in rows) else 1)


if __name__ == "__main__":
    main()
