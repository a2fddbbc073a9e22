import Foundation
import TenureDaemon
import Testing
import TenureTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Tenure's daemon as a drop-in for sanlock's (issue 14): python3-sanlock,
/// unchanged, talks to it over sanlock's socket (`--sanlock-run-dir`).
@Suite(.ownThreads, .serialized) struct SanlockDropInTests {
    static let needs = "needs /usr/bin/python3 with python3-sanlock (Tools/install-deps.sh installs it)"

    /// A lease file with lockspace LS and resources R0, R1 at 1 MiB and 2 MiB,
    /// and a Tenure daemon that also serves sanlock's socket.
    final class Setup {
        let scratch: Scratch
        let file: String
        let sanlockDir: String
        let daemon: RunningDaemon

        init() throws {
            scratch = try Scratch()
            file = try scratch.file("leases.img", size: 8 << 20)
            try Harness.tenureOK(["direct", "format", "--lockspace", "LS", "--path", file, "--resources", "2", "--io-timeout", "1", "--max-hosts", "8"])
            sanlockDir = scratch.path + "/sanlock-run"
            daemon = try RunningDaemon(scratch: scratch, extra: ["--sanlock-run-dir", sanlockDir])
        }

        /// Runs a python3-sanlock script against the daemon; its last line is JSON.
        func python(_ body: String) throws -> [String: Any] {
            let script = "import sanlock, json, os, sys\npath = \(Self.quote(file))\nout = {}\n" + body + "\nprint(json.dumps(out))\n"
            let outcome = try Harness.run("/usr/bin/env", ["SANLOCK_RUN_DIR=\(sanlockDir)", SanlockDaemonSupport.python, "-c", script])
            #expect(outcome.status == 0, "python3-sanlock failed:\n\(outcome)")
            let last = outcome.stdout.split(separator: "\n").last.map(String.init) ?? "{}"
            return (try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]) ?? [:]
        }

        /// A python3-sanlock process that registers, acquires `resource` and
        /// stays; its first line is "held LVER" or "error ERRNO".
        func holder(_ resource: String, offset: Int) throws -> Background {
            let script = """
                import sanlock, sys, time
                fd = sanlock.register()
                try:
                    sanlock.acquire(b"LS", b"\(resource)", [(\(Self.quote(file)), \(offset))], slkfd=fd)
                    v = [r["version"] for r in sanlock.inquire(slkfd=fd) if r["resource"] == b"\(resource)"][0]
                    print("held %d" % v, flush=True)
                except sanlock.SanlockException as e:
                    print("error %d" % e.errno, flush=True)
                    sys.exit(0)
                time.sleep(300)
                """
            return try Background(executable: "/usr/bin/env", ["SANLOCK_RUN_DIR=\(sanlockDir)", SanlockDaemonSupport.python, "-c", script])
        }

        static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "\\'") + "'" }

        /// Builds a C client of libsanlock from `main` (the standard and
        /// sanlock headers included); returns the program's path.
        func compile(_ name: String, _ main: String) throws -> String {
            let source = scratch.path + "/\(name).c", program = scratch.path + "/" + name
            let includes = ["stdio.h", "stdint.h", "stdlib.h", "string.h", "sanlock.h", "sanlock_resource.h"].map { "#include <\($0)>" }
            try (includes.joined(separator: "\n") + "\n" + main).write(toFile: source, atomically: true, encoding: .utf8)
            let built = try Harness.run(Harness.which("gcc")!, ["-o", program, source, "-lsanlock"])
            guard built.status == 0 else { throw HarnessError("gcc could not build \(name).c:\n\(built)") }
            return program
        }
    }

    /// A link named `sanlock` to the tenure binary, in `scratch`.
    static func sanlockLink(in scratch: Scratch) throws -> String {
        let link = scratch.path + "/sanlock"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Harness.tenurePath)
        return link
    }

    /// The first line a background process printed, within `seconds`.
    static func firstLine(_ process: Background, within seconds: Int = 20) -> String? {
        for _ in 0..<(seconds * 20) {
            if let line = process.output.stdout.split(separator: "\n").first { return String(line) }
            usleep(50_000)
        }
        return nil
    }

    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func python3SanlockJoinsAcquiresInquiresReleasesAndLeaves() throws {
        let setup = try Setup()
        let out = try setup.python("""
            sanlock.add_lockspace(b"LS", 1, path, 0)
            out["inq"] = sanlock.inq_lockspace(b"LS", 1, path, 0)
            out["lockspaces"] = [[l["lockspace"].decode(), l["host_id"], l["path"], l["offset"]] for l in sanlock.get_lockspaces()]
            try:
                sanlock.add_lockspace(b"LS", 1, path, 0)
            except sanlock.SanlockException as e:
                out["again"] = e.errno
            fd = sanlock.register()
            sanlock.acquire(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            sanlock.acquire(b"LS", b"R1", [(path, 2097152)], slkfd=fd, shared=True)
            out["held"] = sorted([r["resource"].decode(), r["version"], bool(r["flags"] & sanlock.RES_SHARED)] for r in sanlock.inquire(slkfd=fd))
            out["owners"] = [[o["host_id"], o["generation"]] for o in sanlock.read_resource_owners(b"LS", b"R0", [(path, 1048576)])]
            out["sharers"] = [[o["host_id"], o["generation"]] for o in sanlock.read_resource_owners(b"LS", b"R1", [(path, 2097152)])]
            out["align"] = sanlock.get_alignment(path)
            try:
                sanlock.rem_lockspace(b"LS", 1, path, 0)
            except sanlock.SanlockException as e:
                out["remWhileHeld"] = e.errno
            sanlock.release(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            sanlock.release(b"LS", b"R1", [(path, 2097152)], slkfd=fd)
            out["after"] = sanlock.inquire(slkfd=fd)
            sanlock.rem_lockspace(b"LS", 1, path, 0)
            out["inqAfter"] = sanlock.inq_lockspace(b"LS", 1, path, 0)
            try:
                sanlock.acquire(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            except sanlock.SanlockException as e:
                out["acquireWithoutLockspace"] = e.errno
            """)
        #expect(out["inq"] as? Bool == true, "\(out)")
        #expect((out["lockspaces"] as? [[Any]])?.first?.first as? String == "LS", "\(out)")
        #expect(out["again"] as? Int == Int(EEXIST), "a second add_lockspace: \(out)")
        let held = out["held"] as? [[Any]] ?? []
        #expect(held.count == 2, "\(out)")
        #expect(held.first?.first as? String == "R0" && (held.first?[1] as? Int ?? 0) >= 1 && held.first?[2] as? Bool == false, "\(out)")
        #expect(held.last?.first as? String == "R1" && held.last?[2] as? Bool == true, "\(out)")
        #expect(out["owners"] as? [[Int]] == [[1, 1]], "R0's owner is host 1, generation 1: \(out)")
        #expect(out["sharers"] as? [[Int]] == [[1, 1]], "R1 is shared by host 1: \(out)")
        #expect(out["align"] as? Int == 1 << 20, "\(out)")
        #expect(out["remWhileHeld"] as? Int == Int(EBUSY), "rem_lockspace with leases held: \(out)")
        #expect((out["after"] as? [Any])?.isEmpty == true, "\(out)")
        #expect(out["inqAfter"] as? Bool == false, "\(out)")
        #expect(out["acquireWithoutLockspace"] as? Int == Int(ENOSPC), "\(out)")
    }

    /// Mutual exclusion and fencing between sanlock clients: a second process
    /// cannot take a held lease; a forced request kills the holder (the
    /// process itself), and the next acquire gets a higher lver.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func aForcedRequestKillsTheHolderAndTheNextAcquireGetsAHigherLver() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let first = try setup.holder("R0", offset: 1 << 20)
        let held = try #require(Self.firstLine(first), "the first holder never answered: \(first.output)")
        #expect(held.hasPrefix("held "), "\(held)")
        let firstLver = Int(held.dropFirst(5)) ?? 0
        // The holder is known to Tenure's own client too.
        let status = try setup.daemon.clientOK(["status"])
        #expect(status.stdout.contains("R0"), "\(status)")

        let second = try setup.holder("R0", offset: 1 << 20)
        let refused = try #require(Self.firstLine(second), "the second holder never answered: \(second.output)")
        #expect(refused.hasPrefix("error "), "a second process took a held lease: \(refused)")

        _ = try setup.python("sanlock.request(b\"LS\", b\"R0\", [(path, 1048576)], action=sanlock.REQ_FORCE)")
        var gone = false
        for _ in 0..<200 where !gone {
            gone = !first.process.isRunning
            if !gone { usleep(50_000) }
        }
        #expect(gone, "the holder still runs 10 s after a forced request")
        // The daemon writes the release once it sees the holder gone: wait for that, not a guessed time.
        #expect(eventually { (try? setup.daemon.leases())?.isEmpty == true }, "the killed holder's lease was never released")

        let third = try setup.holder("R0", offset: 1 << 20)
        let next = try #require(Self.firstLine(third), "the next holder never answered: \(third.output)")
        #expect(next.hasPrefix("held "), "\(next)")
        #expect((Int(next.dropFirst(5)) ?? 0) > firstLver, "lver \(next) after \(firstLver)")
    }

    /// vdsm lays out its storage through the daemon: write and read
    /// lockspace and resource areas, then lists the lockspace's hosts. An
    /// area that is held is never laid out again.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func python3SanlockLaysOutAndReadsLeaseAreasThroughTheDaemon() throws {
        let setup = try Setup()
        let fresh = try setup.scratch.file("fresh.img", size: 4 << 20)
        let out = try setup.python("""
            fresh = \(Setup.quote(fresh))
            sanlock.write_lockspace(b"NEW", fresh, 0, iotimeout=1)
            ls = sanlock.read_lockspace(fresh, 0)
            out["readLockspace"] = [ls["lockspace"].decode(), ls["iotimeout"]]
            sanlock.write_resource(b"NEW", b"VOL", [(fresh, 1048576)])
            r = sanlock.read_resource(fresh, 1048576)
            out["readResource"] = [r["lockspace"].decode(), r["resource"].decode(), r["version"]]
            sanlock.add_lockspace(b"NEW", 2, fresh, 0)
            out["hosts"] = [[h["host_id"], h["generation"], h["flags"]] for h in sanlock.get_hosts(b"NEW")]
            fd = sanlock.register()
            sanlock.acquire(b"NEW", b"VOL", [(fresh, 1048576)], slkfd=fd)
            try:
                sanlock.write_resource(b"NEW", b"VOL", [(fresh, 1048576)])
            except sanlock.SanlockException as e:
                out["overwriteHeld"] = e.errno
            try:
                sanlock.write_lockspace(b"NEW", fresh, 0, iotimeout=1)
            except sanlock.SanlockException as e:
                out["overwriteJoined"] = e.errno
            out["version"] = [r["version"] for r in sanlock.inquire(slkfd=fd)]
            """)
        #expect((out["readLockspace"] as? [Any])?.first as? String == "NEW" && (out["readLockspace"] as? [Any])?.last as? Int == 1, "\(out)")
        let resource = out["readResource"] as? [Any] ?? []
        #expect(resource.count == 3 && resource[0] as? String == "NEW" && resource[1] as? String == "VOL" && resource[2] as? Int == 0, "\(out)")
        let hosts = out["hosts"] as? [[Int]] ?? []
        #expect(hosts.count == 1 && hosts.first?[0] == 2 && hosts.first?[1] == 1 && hosts.first?[2] == 3, "host 2, generation 1, live: \(out)")
        #expect(out["overwriteHeld"] as? Int == Int(EBUSY), "a held resource was laid out again: \(out)")
        #expect(out["overwriteJoined"] as? Int == Int(EBUSY), "a joined lockspace was laid out again: \(out)")
        #expect(out["version"] as? [Int] == [1], "\(out)")
    }

    /// Admins' scripts: sanlock's own command line, pointed at Tenure's
    /// socket, prints Tenure's lockspaces, holders and hosts.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.which("sanlock") != nil,
                   "needs python3-sanlock and sanlock's command line (Tools/install-deps.sh installs both)"))
    func sanlocksOwnClientCommandsReadTenuresState() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let holder = try setup.holder("R0", offset: 1 << 20)
        let held = try #require(Self.firstLine(holder), "the holder never answered: \(holder.output)")
        #expect(held.hasPrefix("held "), "\(held)")
        let sanlock = try #require(Harness.which("sanlock"))
        let environment = ["SANLOCK_RUN_DIR": setup.sanlockDir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let status = try Harness.run(sanlock, ["client", "status"], environment: environment)
        #expect(status.status == 0, "\(status)")
        let pid = holder.process.processIdentifier
        #expect(status.stdout.contains("daemon nodeA"), "\(status)")
        #expect(status.stdout.contains("p \(pid)"), "the holder is not listed: \(status)")
        #expect(status.stdout.contains("s LS:1:\(setup.file):0"), "\(status)")
        #expect(status.stdout.contains("r LS:R0:\(setup.file):1048576:\(held.dropFirst(5)) p \(pid)"), "\(status)")
        let hosts = try Harness.run(sanlock, ["client", "host_status", "-s", "LS"], environment: environment)
        #expect(hosts.status == 0, "\(hosts)")
        #expect(hosts.stdout.contains("1 timestamp "), "\(hosts)")
        // Renewals every 2N = 2 s: wait for one after the join.
        #expect(eventually(6) { (try? Harness.run(sanlock, ["client", "renewal", "-s", "LS"], environment: environment))?.stdout.contains("read_ms=") == true })
        let renewal = try Harness.run(sanlock, ["client", "renewal", "-s", "LS"], environment: environment)
        #expect(renewal.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("timestamp=") && $0.contains(" write_ms=") && $0.contains(" next_errors=0") }, "\(renewal)")
        let dump = try Harness.run(sanlock, ["client", "log_dump"], environment: environment)
        #expect(dump.stdout.contains("joined lockspace LS"), "the debug ring lacks the join: \(dump.stdout.suffix(2000))")
        let gets = try Harness.run(sanlock, ["client", "gets"], environment: environment)
        #expect(gets.stdout.contains("s LS:1:\(setup.file):0"), "\(gets)")
        // Tenure's command line prints what sanlock's does, hosts included.
        let link = try Self.sanlockLink(in: setup.scratch)
        #expect(try Harness.run(link, ["client", "gets"], environment: environment).stdout == gets.stdout)
        for binary in [sanlock, link] {
            let withHosts = try Harness.run(binary, ["client", "gets", "-h", "1"], environment: environment).stdout
            let lines = withHosts.split(separator: "\n")
            #expect(lines.count == 2 && lines[1].hasPrefix("h 1 gen 1 timestamp ") && lines[1].hasSuffix(" LIVE"), "\(binary): \(withHosts)")
        }
        let version = try Harness.run(sanlock, ["client", "version"], environment: environment)
        #expect(version.status == 0 && (version.stdout + version.stderr).contains("daemon version 3.8.5"), "\(version)")
    }

    /// The tenure binary under sanlock's name: sanlock's command line for
    /// units and scripts — the daemon, client actions and direct init.
    @Test func theBinaryNamedSanlockSpeaksSanlocksCommandLine() throws {
        let scratch = try Scratch()
        let link = try Self.sanlockLink(in: scratch)
        let file = try scratch.file("leases.img", size: 8 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LS", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let env = ["SANLOCK_RUN_DIR=\(scratch.path)/sanlock-run", "TENURE_RUN_DIR=\(scratch.path)/tenure-run"]
        let daemon = try Background(executable: "/usr/bin/env", env + [link, "daemon", "-D", "-w", "0", "-e", "nodeS", "-o", "1"])
        func sanlock(_ args: [String]) throws -> Outcome { try Harness.run("/usr/bin/env", env + [link] + args) }
        var up = false
        for _ in 0..<100 where !up {
            up = (try? sanlock(["client", "version"]))?.status == 0
            if !up { usleep(50_000) }
        }
        #expect(up, "sanlock daemon did not start: \(daemon.output)")
        let add = try sanlock(["client", "add_lockspace", "-s", "LS:1:\(file):0"])
        #expect(add.status == 0 && add.stdout.contains("add_lockspace done 0"), "\(add)")
        let status = try sanlock(["client", "status"])
        #expect(status.stdout.contains("daemon nodeS") && status.stdout.contains("s LS:1:\(file):0"), "\(status)")
        let gets = try sanlock(["client", "gets"])
        #expect(gets.stdout.contains("s LS:1:\(file):0"), "\(gets)")
        let hosts = try sanlock(["client", "host_status", "-s", "LS"])
        #expect(hosts.stdout.hasPrefix("1 timestamp "), "\(hosts)")
        // direct init refuses to lay a resource over the joined lockspace, and lays a fresh one.
        let over = try sanlock(["direct", "init", "-r", "LS:R9:\(file):0"])
        #expect(over.status != 0, "direct init overwrote a joined lockspace: \(over)")
        let fresh = try scratch.file("fresh.img", size: 2 << 20)
        let initialised = try sanlock(["direct", "init", "-r", "LS:VOL:\(fresh):1048576"])
        #expect(initialised.status == 0, "\(initialised)")
        // Leases for another process: acquire, inquire, a forced request kills it.
        let target = try Background(executable: "/bin/sleep", ["300"])
        let pid = String(target.process.processIdentifier)
        let acquire = try sanlock(["client", "acquire", "-r", "LS:R0:\(file):1048576", "-p", pid])
        #expect(acquire.status == 0 && acquire.stdout.contains("acquire done 0"), "\(acquire)")
        let inquire = try sanlock(["client", "inquire", "-p", pid])
        #expect(inquire.stdout.contains("LS:R0:\(file):1048576:1"), "\(inquire)")
        let again = try sanlock(["client", "acquire", "-r", "LS:R0:\(file):1048576", "-p", String(getpid())])
        #expect(again.status == 1, "a second process took a held lease: \(again)")
        let request = try sanlock(["client", "request", "-r", "LS:R0:\(file):1048576:1", "-f", "1"])
        #expect(request.status == 0, "\(request)")
        var killed = false
        for _ in 0..<200 where !killed {
            killed = !target.process.isRunning
            if !killed { usleep(50_000) }
        }
        #expect(killed, "the holder still runs after a forced request")
        // Its lease is released once the daemon has seen it go (a fence-loop look, then the write).
        #expect(eventually { (try? sanlock(["client", "status"]))?.stdout.contains("r LS:R0:") == false }, "the killed holder's lease was not released")
        // client command: the command itself holds the lease (exec in place).
        let holder = try Background(executable: "/usr/bin/env", env + [link, "client", "command", "-r", "LS:R0:\(file):1048576", "-c", "/bin/sleep", "300"])
        let holderPid = holder.process.processIdentifier
        #expect(eventually { (try? sanlock(["client", "status"]))?.stdout.contains("r LS:R0:\(file):1048576:2 p \(holderPid)") == true },
                "the command does not hold the lease: \((try? sanlock(["client", "status"]))?.stdout ?? "")")
        #expect((try? String(contentsOfFile: "/proc/\(holderPid)/comm", encoding: .utf8))?.hasPrefix("sleep") == true, "the holder is not the command itself")
        _ = try sanlock(["client", "request", "-r", "LS:R0:\(file):1048576:2", "-f", "1"])
        #expect(eventually { !holder.process.isRunning }, "the command still runs after a forced request")
        // direct acquire_id and release_id, on a host id nobody uses.
        let took = try sanlock(["direct", "acquire_id", "-s", "LS:5:\(file):0", "-o", "1", "-e", "nodeZ"])
        #expect(took.status == 0, "\(took)")
        #expect(try sanlock(["direct", "dump", file]).stdout.contains("nodeZ"))
        #expect(try sanlock(["direct", "release_id", "-s", "LS:5:\(file):0"]).status == 0)
        let unknown = try sanlock(["client", "status", "-q", "1"])
        #expect(unknown.status == 1 && unknown.stderr.contains("-q"), "\(unknown)")
        let rem = try sanlock(["client", "rem_lockspace", "-s", "LS:1:\(file):0"])
        #expect(rem.status == 0, "\(rem)")
        let shutdown = try sanlock(["client", "shutdown", "-f", "1"])
        #expect(shutdown.status == 0 && shutdown.stdout.contains("shutdown done 0"), "\(shutdown)")
        _ = daemon.wait()
    }

    /// `direct dump` and `direct read_leader` print what sanlock 3.8.5 prints
    /// for the same file, byte for byte (scripts parse them).
    @Test(.enabled(if: Harness.which("sanlock") != nil, "needs sanlock's command line (Tools/install-deps.sh installs it)"))
    func directDumpAndReadLeaderPrintWhatSanlockPrints() throws {
        let scratch = try Scratch()
        let link = try Self.sanlockLink(in: scratch)
        let file = try scratch.file("leases.img", size: 8 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LS", "--path", file, "--resources", "3", "--io-timeout", "1", "--max-hosts", "8"])
        try Harness.tenureOK(["direct", "acquire-id", "-s", "LS:2:\(file):0", "--host-name", "nodeB"])
        let real = try #require(Harness.which("sanlock"))
        // A host's bit set, a request written, a shared holder and a resource index with an entry, for -f.
        try Harness.tenureOK(["direct", "request", "-r", "LS:R2:\(file):3M:5", "--force"])
        try Harness.tenureOK(["direct", "acquire", "-r", "LS:R1:\(file):2M", "--host-id", "2", "-s", "LS:2:\(file):0", "--shared"])
        #expect(try Harness.run(real, ["direct", "format", "-x", "LS:\(file):4M"]).status == 0)
        #expect(try Harness.run(real, ["direct", "update", "-x", "LS:\(file):4M", "-e", "vm1:6M"]).status == 0)
        for args in [["direct", "dump", file], ["direct", "dump", "\(file):1M:2M"], ["direct", "dump", file, "-f", "1"], ["direct", "dump", file, "-f", "2"],
                     ["direct", "next_free", file, "-Z", "512", "-A", "1M"], ["direct", "next_free", "\(file):1048576", "-Z", "512", "-A", "1M"],
                     ["direct", "read_leader", "-s", "LS:2:\(file):0"], ["direct", "read_leader", "-r", "LS:R1:\(file):2097152"]] {
            let theirs = try Harness.run(real, args)
            let ours = try Harness.run(link, args)
            #expect(ours.status == theirs.status, "\(args): \(ours) vs \(theirs)")
            #expect(ours.stdout == theirs.stdout, "\(args.joined(separator: " ")) differs:\nsanlock:\n\(theirs.stdout)\ntenure:\n\(ours.stdout)")
        }
        // renew_id, then acquire and release as a host id, each read back by sanlock.
        func leader(_ args: [String]) throws -> [String: String] {
            let out = try Harness.run(real, ["direct", "read_leader"] + args).stdout
            return Dictionary(out.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
                return parts.count == 2 ? (parts[0], parts[1]) : nil
            }, uniquingKeysWith: { a, _ in a })
        }
        let before = UInt64(try leader(["-s", "LS:2:\(file):0"])["timestamp"] ?? "") ?? 0
        usleep(1_100_000)
        #expect(try Harness.run(link, ["direct", "renew_id", "-s", "LS:2:\(file):0"]).status == 0)
        #expect(UInt64(try leader(["-s", "LS:2:\(file):0"])["timestamp"] ?? "") ?? 0 > before, "renew_id wrote no newer timestamp")
        let acquired = try Harness.run(link, ["direct", "acquire", "-r", "LS:R0:\(file):1M", "-i", "2", "-g", "1"])
        #expect(acquired.status == 0, "\(acquired)")
        let held = try leader(["-r", "LS:R0:\(file):1M"])
        #expect(held["owner_id"] == "2" && held["lver"] == "1" && held["timestamp"] != "0", "\(held)")
        #expect(try Harness.run(link, ["direct", "release", "-r", "LS:R0:\(file):1M", "-i", "2", "-g", "1"]).status == 0)
        #expect(try leader(["-r", "LS:R0:\(file):1M"])["timestamp"] == "0", "direct release left the lease held")
    }

    /// Lock value blocks (lvmlockd keeps volume-group versions in them): set
    /// by one holder, written before its release, read by the next holder.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func aLockValueBlockSetByOneHolderIsReadByTheNext() throws {
        let setup = try Setup()
        let out = try setup.python("""
            sanlock.add_lockspace(b"LS", 1, path, 0)
            disks = [(path, 1048576)]
            fd = sanlock.register()
            sanlock.acquire(b"LS", b"R0", disks, slkfd=fd, lvb=True)
            out["fresh"] = sanlock.get_lvb(b"LS", b"R0", disks, 16).hex()
            sanlock.set_lvb(b"LS", b"R0", disks, b"vg-seqno-42")
            out["set"] = sanlock.get_lvb(b"LS", b"R0", disks, 11).decode()
            sanlock.release(b"LS", b"R0", disks, slkfd=fd)
            try:
                sanlock.get_lvb(b"LS", b"R0", disks, 11)
            except sanlock.SanlockException as e:
                out["released"] = e.errno
            sanlock.acquire(b"LS", b"R0", disks, slkfd=fd, lvb=True)
            out["next"] = sanlock.get_lvb(b"LS", b"R0", disks, 11).decode()
            sanlock.acquire(b"LS", b"R1", [(path, 2097152)], slkfd=fd)
            try:
                sanlock.set_lvb(b"LS", b"R1", [(path, 2097152)], b"x")
            except sanlock.SanlockException as e:
                out["withoutLVB"] = e.errno
            """)
        #expect(out["fresh"] as? String == String(repeating: "0", count: 32), "a never-written LVB reads as zeros: \(out)")
        #expect(out["set"] as? String == "vg-seqno-42", "\(out)")
        #expect(out["released"] as? Int == Int(ENOENT), "\(out)")
        #expect(out["next"] as? String == "vg-seqno-42", "the next holder did not read what the last one wrote: \(out)")
        #expect(out["withoutLVB"] as? Int == Int(EINVAL), "\(out)")
        // The block is on disk, in sector 2002 of the area.
        let sector = try Data(contentsOf: URL(fileURLWithPath: setup.file))[(1 << 20) + 2002 * 512 ..< (1 << 20) + 2002 * 512 + 11]
        #expect(String(decoding: sector, as: UTF8.self) == "vg-seqno-42")
    }

    /// sanlock.service runs `sanlock daemon` without -D: it detaches.
    @Test func aDetachedSanlockDaemonStartsWithSanlocksOptions() throws {
        let scratch = try Scratch()
        let link = try Self.sanlockLink(in: scratch)
        let env = ["SANLOCK_RUN_DIR=\(scratch.path)/sanlock-run", "TENURE_RUN_DIR=\(scratch.path)/tenure-run"]
        let started = try Harness.run("/usr/bin/env", env + [link, "daemon", "-w", "0", "-e", "nodeE", "-o", "1", "-U", "root"])
        #expect(started.status == 0, "\(started)")
        defer { _ = try? Harness.run("/usr/bin/env", env + [link, "client", "shutdown", "-f", "1"]) }
        let status = try Harness.run("/usr/bin/env", env + [link, "client", "status"])
        #expect(status.stdout.hasPrefix("daemon nodeE"), "\(status)")
        // sanlock's own `client shutdown -w 1` waits for the result (shutdown_wait).
        if let real = Harness.which("sanlock") {
            let stopped = try Harness.run("/usr/bin/env", env + [real, "client", "shutdown", "-f", "1", "-w", "1"])
            #expect(stopped.stdout.contains("shutdown done 0"), "\(stopped)")
        }
    }

    /// lvmlockd marks its lockspaces used; a used lockspace is not left.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.which("sanlock") != nil,
                   "needs python3-sanlock and sanlock's command line (Tools/install-deps.sh installs both)"))
    func aLockspaceMarkedUsedIsNotLeftUntilUnmarked() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let sanlock = try #require(Harness.which("sanlock"))
        let environment = ["SANLOCK_RUN_DIR": setup.sanlockDir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let marked = try Harness.run(sanlock, ["client", "set_config", "-s", "LS", "-u", "1"], environment: environment)
        #expect(marked.status == 0, "\(marked)")
        let refused = try Harness.run(sanlock, ["client", "rem_lockspace", "-s", "LS:1:\(setup.file):0"], environment: environment)
        #expect(refused.status != 0 && refused.stdout.contains("done -16"), "a used lockspace was left: \(refused)")
        let still = try setup.python("out[\"joined\"] = sanlock.inq_lockspace(b\"LS\", 1, path, 0)")
        #expect(still["joined"] as? Bool == true, "\(still)")
        let unmarked = try Harness.run(sanlock, ["client", "set_config", "-s", "LS", "-u", "0"], environment: environment)
        #expect(unmarked.status == 0, "\(unmarked)")
        // Orphans always keep their lockspace here: -O 1 is accepted, -O 0 refused.
        #expect(try Harness.run(sanlock, ["client", "set_config", "-s", "LS", "-O", "1"], environment: environment).stdout.contains("set_config done 0"))
        let unusedByOrphans = try Harness.run(sanlock, ["client", "set_config", "-s", "LS", "-O", "0"], environment: environment)
        #expect(unusedByOrphans.stdout.contains("set_config done -22"), "\(unusedByOrphans)")
        let left = try Harness.run(sanlock, ["client", "rem_lockspace", "-s", "LS:1:\(setup.file):0"], environment: environment)
        #expect(left.status == 0, "\(left)")
    }

    /// Host events between two daemons, as sanlk-reset and lvmlockd send
    /// them: host 1 sets an event for host 2 in its delta lease; a listener
    /// registered on host 2 receives it once, with who sent it.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func aHostEventSetOnOneHostReachesAListenerOnAnother() throws {
        let setup = try Setup()
        let secondDir = setup.scratch.path + "/sanlock-run-2"
        let second = try RunningDaemon(scratch: setup.scratch, name: "nodeB", extra: ["--sanlock-run-dir", secondDir])
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let join2 = try Harness.run("/usr/bin/env", ["SANLOCK_RUN_DIR=\(secondDir)", SanlockDaemonSupport.python, "-c",
                                                      "import sanlock; sanlock.add_lockspace(b'LS', 2, \(Setup.quote(setup.file)), 0)"])
        #expect(join2.status == 0, "\(join2)")
        let listener = try Background(executable: "/usr/bin/env", ["SANLOCK_RUN_DIR=\(secondDir)", SanlockDaemonSupport.python, "-c", """
            import sanlock, select, json, time
            fd = sanlock.reg_event(b"LS")
            print("listening", flush=True)
            seen = []
            deadline = time.time() + 20
            while time.time() < deadline and not seen:
                r, _, _ = select.select([fd], [], [], 1)
                if r:
                    seen += sanlock.get_event(fd)
            time.sleep(3)
            r, _, _ = select.select([fd], [], [], 0)
            again = sanlock.get_event(fd) if r else []
            sanlock.end_event(fd, b"LS")
            print(json.dumps({"events": seen, "again": again}), flush=True)
            """])
        #expect(Self.firstLine(listener) == "listening", "\(listener.output)")
        let sent = try setup.python("""
            sanlock.set_event(b"LS", 2, 0, 7, data=42, flags=sanlock.SETEV_CUR_GENERATION)
            try:
                sanlock.set_event(b"LS", 2, 0, 8, data=1)
            except sanlock.SanlockException as e:
                out["busy"] = e.errno
            """)
        #expect(sent["busy"] as? Int == Int(EBUSY), "a second event replaced the first without SETEV_REPLACE_EVENT: \(sent)")
        _ = listener.wait()
        let lines = listener.output.stdout.split(separator: "\n")
        let result = try JSONSerialization.jsonObject(with: Data((lines.last ?? "{}").utf8)) as? [String: Any] ?? [:]
        let events = result["events"] as? [[String: Int]] ?? []
        #expect(events.count == 1, "\(listener.output)")
        let e = events.first ?? [:]
        #expect(e["event"] == 7 && e["data"] == 42 && e["host_id"] == 2 && e["generation"] == 1, "\(e)")
        #expect(e["from_host_id"] == 1 && e["from_generation"] == 1, "\(e)")
        #expect((result["again"] as? [Any])?.isEmpty == true, "the event was delivered twice: \(result)")
        withExtendedLifetime(second) {}
    }

    /// sanlock.service's config file: the keys Tenure acts on are used, the
    /// others named, a misspelled one refused with the nearest key.
    @Test func sanlocksConfigFileIsReadStrictly() throws {
        let scratch = try Scratch()
        let link = try Self.sanlockLink(in: scratch)
        let conf = scratch.path + "/sanlock.conf"
        try "# sanlock config\nuse_watchdog = 0\nour_host_name = fromconf\nio_timeout = 1\nsh_retries = 8\n".write(toFile: conf, atomically: true, encoding: .utf8)
        let env = ["SANLOCK_RUN_DIR=\(scratch.path)/sanlock-run", "TENURE_RUN_DIR=\(scratch.path)/tenure-run", "TENURE_SANLOCK_CONF=\(conf)"]
        let started = try Harness.run("/usr/bin/env", env + [link, "daemon"])
        #expect(started.status == 0, "\(started)")
        #expect(started.stderr.contains("sh_retries has no effect"), "\(started)")
        defer { _ = try? Harness.run("/usr/bin/env", env + [link, "client", "shutdown", "-f", "1"]) }
        let status = try Harness.run("/usr/bin/env", env + [link, "client", "status"])
        #expect(status.stdout.hasPrefix("daemon fromconf"), "our_host_name from the file: \(status)")
        try "use_watchdgo = 0\n".write(toFile: conf, atomically: true, encoding: .utf8)
        let refused = try Harness.run("/usr/bin/env", env + [link, "daemon", "-D"])
        #expect(refused.status == 1 && refused.stderr.contains("use_watchdgo") && refused.stderr.contains("use_watchdog"), "\(refused)")
    }

    /// python3-sanlock's killpath: a graceful request runs the holder's
    /// killpath (with its arguments) instead of signalling it.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func aGracefulRequestRunsTheKillpathAPythonClientSet() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let marker = setup.scratch.path + "/killpath-ran"
        let script = setup.scratch.path + "/killpath.sh"
        try "#!/bin/sh\necho \"$@ $TENURE_KILL_PID\" > \(marker)\nkill -9 \"$TENURE_KILL_PID\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let holder = try Background(executable: "/usr/bin/env", ["SANLOCK_RUN_DIR=\(setup.sanlockDir)", SanlockDaemonSupport.python, "-c", """
            import sanlock, time
            fd = sanlock.register()
            sanlock.killpath(\(Setup.quote(script)), ["vm-one"], slkfd=fd)
            sanlock.acquire(b"LS", b"R0", [(\(Setup.quote(setup.file)), 1048576)], slkfd=fd)
            print("held", flush=True)
            time.sleep(300)
            """])
        #expect(Self.firstLine(holder) == "held", "\(holder.output)")
        _ = try setup.python("sanlock.request(b\"LS\", b\"R0\", [(path, 1048576)], action=sanlock.REQ_GRACEFUL)")
        #expect(eventually(15) { !holder.process.isRunning }, "the holder still runs after a graceful request")
        let ran = (try? String(contentsOfFile: marker, encoding: .utf8)) ?? ""
        #expect(ran.trimmingCharacters(in: .whitespacesAndNewlines) == "vm-one \(holder.process.processIdentifier)", "the killpath did not run as set: \(ran)")
    }

    /// lvmlockd's persistent leases, through libsanlock itself (a C client):
    /// a persistent lease outlives its process as an orphan, another
    /// process adopts it (SANLK_ACQUIRE_ORPHAN), and SANLK_REL_ORPHAN
    /// releases it; the lockspace is not left while an orphan remains.
    @Test(.enabled(if: Harness.which("gcc") != nil && FileManager.default.fileExists(atPath: "/usr/include/sanlock_resource.h") && Harness.which("sanlock") != nil,
                   "needs gcc, libsanlock-dev and sanlock's command line (Tools/install-deps.sh installs them)"))
    func aPersistentLeaseOutlivesItsProcessAsAnOrphanAndIsAdoptedOrReleased() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let program = try setup.compile("orphans", """
            /* orphans MODE PATH: persist | adopt | release */
            int main(int argc, char **argv) {
                struct { struct sanlk_resource r; struct sanlk_disk d; } res;
                memset(&res, 0, sizeof(res));
                strcpy(res.r.lockspace_name, "LS");
                strcpy(res.r.name, "R0");
                res.r.num_disks = 1;
                strcpy(res.r.disks[0].path, argv[2]);
                res.r.disks[0].offset = 1048576;
                struct sanlk_resource *list[1] = { &res.r };
                if (!strcmp(argv[1], "release")) {
                    printf("%d\\n", sanlock_release(-1, -1, SANLK_REL_ORPHAN, 1, list));
                    return 0;
                }
                int fd = sanlock_register();
                if (fd < 0) { printf("register %d\\n", fd); return 1; }
                uint32_t flags = 0;
                if (!strcmp(argv[1], "persist")) res.r.flags |= SANLK_RES_PERSISTENT;
                else flags |= SANLK_ACQUIRE_ORPHAN_ONLY;
                printf("%d\\n", sanlock_acquire(fd, -1, flags, 1, list, NULL));
                return 0;   /* exits holding it */
            }
            """)
        let environment = ProcessInfo.processInfo.environment.merging(["SANLOCK_RUN_DIR": setup.sanlockDir]) { $1 }
        let sanlock = try #require(Harness.which("sanlock"))
        func status() throws -> String { try Harness.run(sanlock, ["client", "status"], environment: environment).stdout }

        #expect(try Harness.run(program, ["persist", setup.file], environment: environment).stdout == "0\n")
        #expect(eventually { (try? status())?.contains("r LS:R0:\(setup.file):1048576:1 p 0 ORPHAN") == true },
                "the persistent lease is not an orphan after its process exited: \((try? status()) ?? "")")
        // Held on this host: a plain acquire is refused, the lockspace is not left.
        let plain = try setup.python("""
            fd = sanlock.register()
            try:
                sanlock.acquire(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            except sanlock.SanlockException as e:
                out["refused"] = e.errno
            try:
                sanlock.rem_lockspace(b"LS", 1, path, 0)
            except sanlock.SanlockException as e:
                out["remRefused"] = e.errno
            """)
        #expect(plain["refused"] != nil && plain["remRefused"] as? Int == Int(EBUSY), "\(plain)")
        // Adopted by another process, which exits holding it as an ordinary lease: released.
        #expect(try Harness.run(program, ["adopt", setup.file], environment: environment).stdout == "0\n")
        #expect(eventually { (try? status())?.contains("R0") == false }, "the adopted lease was not released when its process exited")
        #expect(try Harness.run(program, ["adopt", setup.file], environment: environment).stdout != "0\n", "adopted an orphan that is not there")
        // Orphaned again, then released with SANLK_REL_ORPHAN: lver 2, and free.
        #expect(try Harness.run(program, ["persist", setup.file], environment: environment).stdout == "0\n")
        #expect(eventually { (try? status())?.contains("1048576:2 p 0 ORPHAN") == true }, "\((try? status()) ?? "")")
        #expect(try Harness.run(program, ["release", setup.file], environment: environment).stdout == "0\n")
        #expect(eventually { (try? status())?.contains("R0") == false }, "\((try? status()) ?? "")")
        let free = try setup.python("""
            fd = sanlock.register()
            sanlock.acquire(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            out["lver"] = [r["version"] for r in sanlock.inquire(slkfd=fd)]
            """)
        #expect(free["lver"] as? [Int] == [3], "\(free)")
        // Its process has exited; the daemon releases its lease when it sees that.
        #expect(eventually { (try? status())?.contains("R0") == false }, "\((try? status()) ?? "")")
        // A forced request for an orphan releases it: no process to stop.
        #expect(try Harness.run(program, ["persist", setup.file], environment: environment).stdout == "0\n")
        #expect(eventually { (try? status())?.contains("1048576:4 p 0 ORPHAN") == true }, "\((try? status()) ?? "")")
        _ = try setup.python("sanlock.request(b\"LS\", b\"R0\", [(path, 1048576)], action=sanlock.REQ_FORCE)")
        #expect(eventually(15) { (try? status())?.contains("R0") == false }, "a forced request left the orphan: \((try? status()) ?? "")")
        let taken = try setup.python("""
            fd = sanlock.register()
            sanlock.acquire(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            out["lver"] = [r["version"] for r in sanlock.inquire(slkfd=fd)]
            """)
        #expect((taken["lver"] as? [Int])?.first ?? 0 > 4, "\(taken)")
    }

    /// The resource index through Tenure's own socket and command line
    /// (issue 28: what sanlock's socket reaches, Tenure's reaches too), on
    /// the same index sanlock's clients use: what one side writes, the
    /// other reads.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.which("sanlock") != nil,
                   "needs python3-sanlock and sanlock's command line (Tools/install-deps.sh installs both)"))
    func theResourceIndexIsReachedThroughTenuresSocketToo() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let sanlock = try #require(Harness.which("sanlock"))
        let environment = ["SANLOCK_RUN_DIR": setup.sanlockDir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let rx = "LS:\(setup.file):3M"
        func viaSanlock(_ args: [String]) throws -> Outcome { try Harness.run(sanlock, ["client"] + args + ["-x", rx], environment: environment) }
        func viaTenure(_ args: [String]) throws -> Outcome { try setup.daemon.client(["index"] + args + ["-x", rx]) }

        #expect(try viaSanlock(["format"]).stdout.contains("format done 0"))
        let created = try viaTenure(["create", "--name", "vm1"])
        #expect(created.status == 0 && created.stdout.contains("created vm1 at 5242880"), "\(created)")
        #expect(try viaSanlock(["lookup", "-e", "vm1"]).stdout.contains("name vm1 offset 5242880"), "sanlock's client does not see Tenure's create")
        #expect(try viaSanlock(["create", "-e", "vm2"]).stdout.contains("offset 6291456"))
        #expect(try viaTenure(["lookup", "--name", "vm2"]).stdout.contains("vm2 at 6291456"), "Tenure's client does not see sanlock's create")
        #expect(try viaTenure(["lookup"]).stdout.contains("free area at 7340032"))
        let twice = try viaTenure(["create", "--name", "vm1"])
        #expect(twice.status != 0, "a second vm1 was created: \(twice)")
        let deleted = try viaTenure(["delete", "--name", "vm1"])
        #expect(deleted.status == 0 && deleted.stdout.contains("deleted vm1"), "\(deleted)")
        #expect(try viaSanlock(["lookup", "-e", "vm1"]).stdout.contains("lookup done -2"), "vm1 is still listed")
        let bad = try viaTenure(["frobnicate"])
        #expect(bad.status != 0 && bad.stderr.contains("lookup"), "\(bad)")
    }

    /// The resource index through Tenure's daemon, driven by sanlock 3.8.5's
    /// own command line (libsanlock's calls), and read back by sanlock's own
    /// `direct lookup` on the disk: format, create, lookup (four ways),
    /// update, rebuild, delete. A lease someone holds is never deleted.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.which("sanlock") != nil,
                   "needs python3-sanlock and sanlock's command line (Tools/install-deps.sh installs both)"))
    func theResourceIndexWorksThroughTheDaemonAndSanlockReadsWhatItWrote() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let sanlock = try #require(Harness.which("sanlock"))
        let environment = ["SANLOCK_RUN_DIR": setup.sanlockDir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        // The index at 3M, its lease at 4M, leases at 5M, 6M and 7M (the file ends at 8M).
        let rx = "LS:\(setup.file):3M"
        func client(_ args: [String]) throws -> Outcome { try Harness.run(sanlock, ["client"] + args + ["-x", rx], environment: environment) }
        func lookup(_ entry: String?) throws -> Outcome { try client(["lookup"] + (entry.map { ["-e", $0] } ?? [])) }

        let format = try client(["format"])
        #expect(format.status == 0 && format.stdout.contains("format done 0"), "\(format)")
        let vm1 = try client(["create", "-e", "vm1"])
        #expect(vm1.stdout.contains("create_resource done 0") && vm1.stdout.contains("offset 5242880"), "\(vm1)")
        let vm2 = try client(["create", "-e", "vm2"])
        #expect(vm2.stdout.contains("offset 6291456"), "\(vm2)")
        let again = try client(["create", "-e", "vm1"])
        #expect(again.status != 0 && again.stdout.contains("done -17"), "a second vm1 was created: \(again)")

        #expect(try lookup("vm2").stdout.contains("name vm2 offset 6291456"))
        #expect(try lookup(nil).stdout.contains("name - offset 7340032"), "the first free area")
        #expect(try lookup(":5M").stdout.contains("name vm1 offset 5242880"))
        #expect(try lookup("vm2:5M").stdout.contains("lookup done \(-278)"), "SANLK_RINDEX_DIFF")
        // sanlock itself reads the index Tenure wrote.
        let direct = try Harness.run(sanlock, ["direct", "lookup", "-x", rx, "-e", "vm2"], environment: environment)
        #expect(direct.stdout.contains("name vm2 offset 6291456"), "\(direct)")

        // The new lease is a lease: acquired at lver 1.
        let holder = try setup.holder("vm1", offset: 5 << 20)
        #expect(Self.firstLine(holder) == "held 1", "\(holder.output)")
        let busy = try client(["delete", "-e", "vm1"])
        #expect(busy.status != 0 && busy.stdout.contains("done -16"), "a held lease was deleted: \(busy)")
        #expect(try lookup("vm1").stdout.contains("name vm1 offset 5242880"), "the held lease was unlisted")
        // SIGKILL: the test runner's children inherit its blocked SIGTERM.
        kill(holder.process.processIdentifier, SIGKILL)
        holder.process.waitUntilExit()
        #expect(eventually(20) { (try? client(["delete", "-e", "vm1"]))?.stdout.contains("delete_resource done 0") == true }, "vm1 was never deleted")
        #expect(try lookup("vm1").stdout.contains("lookup done -2"))
        let cleared = try Data(contentsOf: URL(fileURLWithPath: setup.file))[(5 << 20)..<((5 << 20) + 4)]
        #expect(Array(cleared) == [0x16, 0x20, 0x28, 0x11], "the deleted lease's area is not marked cleared: \(Array(cleared))")

        // update lists and unlists by hand; rebuild lists what the areas hold.
        #expect(try client(["update", "-e", "vm3:5M"]).stdout.contains("update done 0"))
        #expect(try lookup(":5M").stdout.contains("name vm3 offset 5242880"))
        #expect(try client(["rebuild"]).stdout.contains("rebuild done 0"))
        #expect(try lookup(":5M").stdout.contains("name - offset 5242880"), "rebuild listed a cleared area")
        #expect(try lookup("vm2").stdout.contains("name vm2 offset 6291456"), "rebuild lost vm2")
        #expect(try client(["update", "-e", ":6M", "-z", "1"]).stdout.contains("update done 0"))
        #expect(try lookup("vm2").stdout.contains("lookup done -2"))
        #expect(try client(["rebuild"]).stdout.contains("rebuild done 0"))
        #expect(try lookup("vm2").stdout.contains("name vm2 offset 6291456"), "rebuild did not find vm2 again")

        // A create reuses the cleared area; its lease starts again at lver 1.
        let vm4 = try client(["create", "-e", "vm4"])
        #expect(vm4.stdout.contains("offset 5242880"), "\(vm4)")
        let next = try setup.holder("vm4", offset: 5 << 20)
        #expect(Self.firstLine(next) == "held 1", "\(next.output)")
        // The index's own lease is free between operations.
        let indexLease = try Harness.run(sanlock, ["direct", "read_leader", "-r", "LS:rindex_lease:\(setup.file):4194304"], environment: environment)
        #expect(indexLease.stdout.contains("timestamp 0"), "the index lease is still held: \(indexLease)")
        kill(next.process.processIdentifier, SIGKILL)
    }

    /// `sanlock direct format -x` as Tenure writes it is sanlock's, byte for
    /// byte (but for four bytes sanlock leaves uninitialised: the padding
    /// after the guard lease's request record).
    @Test(.enabled(if: Harness.which("sanlock") != nil, "needs sanlock's command line (Tools/install-deps.sh installs it)"))
    func anIndexFormattedByTenureIsTheOneSanlockFormats() throws {
        let scratch = try Scratch()
        let ours = try scratch.file("ours.img", size: 4 << 20), theirs = try scratch.file("theirs.img", size: 4 << 20)
        let link = try Self.sanlockLink(in: scratch)
        let sanlock = try #require(Harness.which("sanlock"))
        for (binary, file) in [(link, ours), (sanlock, theirs)] {
            let out = try Harness.run(binary, ["direct", "format", "-x", "LS:\(file):1M"])
            #expect(out.status == 0 && out.stdout.contains("format done 0"), "\(binary): \(out)")
        }
        var a = Array(try Data(contentsOf: URL(fileURLWithPath: ours)))
        var b = Array(try Data(contentsOf: URL(fileURLWithPath: theirs)))
        let padding = (2 << 20) + 512 + 20
        a.replaceSubrange(padding..<(padding + 4), with: [0, 0, 0, 0])
        b.replaceSubrange(padding..<(padding + 4), with: [0, 0, 0, 0])
        let first = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(first == nil, "the formats differ first at byte \(first ?? -1)")
        #expect(a[(1 << 20)..<((1 << 20) + 4)] == [0x18, 0x20, 0x04, 0x01], "no index magic at 1M")
        // And each reads the other's: sanlock's lookup on ours, ours on sanlock's.
        let theirLookup = try Harness.run(sanlock, ["direct", "lookup", "-x", "LS:\(ours):1M"])
        #expect(theirLookup.stdout.contains("name - offset 3145728"), "\(theirLookup)")
        let ourLookup = try Harness.run(link, ["direct", "lookup", "-x", "LS:\(theirs):1M"])
        #expect(ourLookup.stdout.contains("name - offset 3145728"), "\(ourLookup)")
        let wrong = try Harness.run(link, ["direct", "lookup", "-x", "OTHER:\(theirs):1M"])
        #expect(wrong.status != 0 && wrong.stderr.contains("belongs to lockspace \"LS\""), "\(wrong)")
    }

    /// SANLK_REL_RENAME (lvmlockd retires a lock with it): the lease is
    /// freed under its new name in one leader write; the old name no longer
    /// acquires it, the new one does, at the next lver.
    @Test(.enabled(if: Harness.which("gcc") != nil && FileManager.default.fileExists(atPath: "/usr/include/sanlock_resource.h")
                   && SanlockDaemonSupport.hasPythonSanlock,
                   "needs gcc, libsanlock-dev and python3-sanlock (Tools/install-deps.sh installs them)"))
    func aReleaseWithRenameFreesTheLeaseUnderItsNewName() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let program = try setup.compile("rename", """
            /* rename PATH NEWNAME: acquire R0, release it renamed */
            int main(int argc, char **argv) {
                struct { struct sanlk_resource r; struct sanlk_disk d; } res;
                struct sanlk_resource renamed;
                memset(&res, 0, sizeof(res));
                memset(&renamed, 0, sizeof(renamed));
                strcpy(res.r.lockspace_name, "LS");
                strcpy(res.r.name, "R0");
                res.r.num_disks = 1;
                strcpy(res.r.disks[0].path, argv[1]);
                res.r.disks[0].offset = 1048576;
                strcpy(renamed.lockspace_name, "LS");
                strcpy(renamed.name, argv[2]);
                int fd = sanlock_register();
                struct sanlk_resource *one[1] = { &res.r };
                int rv = sanlock_acquire(fd, -1, 0, 1, one, NULL);
                struct sanlk_resource *two[2] = { &res.r, &renamed };
                printf("%d %d\\n", rv, sanlock_release(fd, -1, SANLK_REL_RENAME, 2, two));
                return 0;
            }
            """)
        let environment = ProcessInfo.processInfo.environment.merging(["SANLOCK_RUN_DIR": setup.sanlockDir]) { $1 }
        let ran = try Harness.run(program, [setup.file, "R0-retired"], environment: environment)
        #expect(ran.stdout == "0 0\n", "\(ran)")
        let after = try setup.python("""
            r = sanlock.read_resource(path, 1048576)
            out["name"] = r["resource"].decode()
            fd = sanlock.register()
            try:
                sanlock.acquire(b"LS", b"R0", [(path, 1048576)], slkfd=fd)
            except sanlock.SanlockException as e:
                out["oldName"] = e.errno
            sanlock.acquire(b"LS", b"R0-retired", [(path, 1048576)], slkfd=fd)
            out["lver"] = [r["version"] for r in sanlock.inquire(slkfd=fd)]
            """)
        #expect(after["name"] as? String == "R0-retired", "\(after)")
        #expect(after["oldName"] != nil, "the old name still acquires the lease: \(after)")
        #expect(after["lver"] as? [Int] == [2], "\(after)")
    }

    /// Regression: write_lockspace took its layout from the message header,
    /// where libsanlock puts none, instead of the lockspace's own flags. On
    /// a 4K disk it laid out the default 8 MiB where 1 MiB was asked, over
    /// the resource lease after it — its lver back to 0, a fencing token
    /// handed out again.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.canUseLoopDevices,
                   "needs python3-sanlock, root and loop devices (Tools/install-deps.sh installs python3-sanlock)"))
    func writeLockspaceLaysOutTheAreaTheLockspaceFlagsAskForAndNoMore() throws {
        let setup = try Setup()
        let disk = try LoopDevice(in: setup.scratch, size: 16 << 20, sectorSize: 4096)
        let out = try setup.python("""
            dev = \(Setup.quote(disk.device))
            sanlock.write_lockspace(b"K", dev, 0, iotimeout=1, align=1048576, sector=4096)
            sanlock.write_resource(b"K", b"R", [(dev, 1048576)], align=1048576, sector=4096)
            sanlock.add_lockspace(b"K", 1, dev, 0)
            fd = sanlock.register()
            for _ in range(2):
                sanlock.acquire(b"K", b"R", [(dev, 1048576)], slkfd=fd)
                sanlock.release(b"K", b"R", [(dev, 1048576)], slkfd=fd)
            sanlock.rem_lockspace(b"K", 1, dev, 0)
            sanlock.write_lockspace(b"K", dev, 0, iotimeout=1, align=1048576, sector=4096)
            r = sanlock.read_resource(dev, 1048576, align=1048576, sector=4096)
            out["after"] = [r["resource"].decode(), r["version"]]
            """)
        #expect(out["after"] as? [AnyHashable] == ["R", 2], "the lease after the lockspace was overwritten: \(out)")
    }

    /// `sanlock client init`, `read`, `align`, `examine`, `set_event` and
    /// `convert`, from sanlock 3.8.5's own command line and from Tenure's
    /// under sanlock's name, against Tenure's daemon: the same lines.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.which("sanlock") != nil,
                   "needs python3-sanlock and sanlock's command line (Tools/install-deps.sh installs both)"))
    func sanlocksClientActionsOnAreasPrintTheSameFromBothCommandLines() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        let real = try #require(Harness.which("sanlock"))
        let link = try Self.sanlockLink(in: setup.scratch)
        let environment = ["SANLOCK_RUN_DIR": setup.sanlockDir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let fresh = try setup.scratch.file("fresh.img", size: 4 << 20)
        for (i, binary) in [real, link].enumerated() {
            func run(_ args: [String]) throws -> Outcome { try Harness.run(binary, ["client"] + args, environment: environment) }
            let name = "N\(i)"
            #expect(try run(["init", "-s", "\(name):0:\(fresh):0", "-o", "1"]).stdout.contains("init done 0"), "\(binary)")
            #expect(try run(["init", "-r", "\(name):V:\(fresh):1048576"]).stdout.contains("init done 0"), "\(binary)")
            let ls = try run(["read", "-s", "\(name):0:\(fresh):0"])
            #expect(ls.stdout.contains("s \(name):0:\(fresh):0"), "\(binary): \(ls)")
            let r = try run(["read", "-r", "\(name):V:\(fresh):1048576"])
            #expect(r.stdout.contains("r \(name):V:\(fresh):1048576:0"), "\(binary): \(r)")
            #expect(try run(["align", "-s", "LS:0:\(setup.file):0"]).stdout.contains("align done 1048576"), "\(binary)")
            #expect(try run(["examine", "-s", "LS:1:\(setup.file):0"]).stdout.contains("examine done 0"), "\(binary)")
            #expect(try run(["set_event", "-s", "LS", "-i", "2", "-e", "1", "-d", "5"]).stdout.contains("set_event done 0"), "\(binary)")
            // Converting a lease the caller does not hold is refused alike.
            let convert = try run(["convert", "-r", "LS:R0:\(setup.file):1048576:SH", "-p", "1"])
            #expect(!convert.stdout.contains("convert done 0"), "\(binary): \(convert)")
        }
    }

    /// Nothing a client sends over sanlock's socket stops the daemon:
    /// random commands with random payloads, truncated and foreign headers,
    /// absurd lengths. A correct client is served afterwards.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock, Comment(rawValue: needs)))
    func malformedSanlockMessagesNeverBreakTheDaemon() throws {
        let setup = try Setup()
        _ = try setup.python("sanlock.add_lockspace(b\"LS\", 1, path, 0)")
        var generator = SystemRandomNumberGenerator()
        let socketPath = setup.sanlockDir + "/sanlock.sock"
        // Shutdown (4, 29) would stop it on purpose; the writes (18, 19) need a real path to do anything.
        let commands = (1...45).filter { ![4, 29, 18, 19].contains($0) }
        for round in 0..<400 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socketPath.utf8) + [0]) }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            #expect(connected == 0)
            let payload = (0..<Int.random(in: 0...1500, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var header: [UInt32] = [0x0428_2010, 1, UInt32(commands.randomElement(using: &generator)!), UInt32.random(in: 0...3, using: &generator),
                                    UInt32(32 + payload.count), UInt32(round), UInt32.random(in: 0...9, using: &generator),
                                    round % 2 == 0 ? 0xFFFF_FFFF : UInt32.random(in: 0...70000, using: &generator)]
            switch round % 5 {
            case 0: header[0] = UInt32.random(in: 0...UInt32.max, using: &generator)   // foreign magic
            case 1: header[4] = UInt32.random(in: 0...UInt32.max, using: &generator)   // absurd length
            case 2: header[4] = 32                                                      // payload not counted
            default: break
            }
            var bytes = header.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } } + payload
            if round % 7 == 3 { bytes = Array(bytes.prefix(Int.random(in: 1..<bytes.count, using: &generator))) }
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            shutdown(fd, Int32(SHUT_WR))
            var reply = [UInt8](repeating: 0, count: 4096)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = recv(fd, &reply, reply.count, 0)
            close(fd)
        }
        #expect(setup.daemon.process.process.isRunning, "the daemon died: \(setup.daemon.process.output.stderr.suffix(3000))")
        let served = try setup.python("out[\"joined\"] = sanlock.inq_lockspace(b\"LS\", 1, path, 0)")
        #expect(served["joined"] as? Bool == true, "\(served)")
    }

    /// Privileges on sanlock's socket are sanlock's: a member of the socket
    /// group (oVirt's vdsm is one) may join lockspaces; a user outside it
    /// cannot even connect.
    @Test(.enabled(if: SanlockDaemonSupport.hasPythonSanlock && Harness.isRoot && Harness.which("setpriv") != nil,
                   "needs root, setpriv and python3-sanlock"))
    func theSocketGroupHasSanlocksRightsAndOthersAreShutOut() throws {
        let scratch = try Scratch()
        chmod(scratch.path, 0o755)
        let file = try scratch.file("leases.img", size: 8 << 20)
        chmod(file, 0o666)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LS", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let group = "tenure-sl-\(getpid() % 100000)"
        _ = try Harness.run("/usr/sbin/groupadd", [group])
        defer { _ = try? Harness.run("/usr/sbin/groupdel", [group]) }
        let gid = try #require(getgrnam(group)).pointee.gr_gid
        let sanlockDir = scratch.path + "/sanlock-run"
        let daemon = try RunningDaemon(scratch: scratch, extra: ["--sanlock-run-dir", sanlockDir, "--socket-group", group])
        let join = "import sanlock; sanlock.add_lockspace(b'LS', 1, '\(file)', 0); print(sanlock.inq_lockspace(b'LS', 1, '\(file)', 0))"
        let member = try Harness.run(Harness.which("setpriv")!, ["--reuid=65534", "--regid=65534", "--groups=\(gid)", "/usr/bin/env",
                                                                 "SANLOCK_RUN_DIR=\(sanlockDir)", SanlockDaemonSupport.python, "-c", join])
        #expect(member.status == 0 && member.stdout.contains("True"), "a socket-group member could not join: \(member)")
        let outsider = try Harness.run(Harness.which("setpriv")!, ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/env",
                                                                   "SANLOCK_RUN_DIR=\(sanlockDir)", SanlockDaemonSupport.python, "-c",
                                                                   "import sanlock; sanlock.inq_lockspace(b'LS', 1, '\(file)', 0)"])
        #expect(outsider.status != 0 && outsider.stderr.contains("Permission denied"), "a user outside the group reached the socket: \(outsider)")
        withExtendedLifetime(daemon) {}
    }

    /// A real sanlock daemon's run dir is never taken over.
    @Test func aRunDirAnotherDaemonServesIsRefused() throws {
        let scratch = try Scratch()
        let dir = scratch.path + "/sanlock-run"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let first = try RunningDaemon(scratch: scratch, name: "first", extra: ["--sanlock-run-dir", dir])
        let second = try Harness.tenure(["daemon", "--foreground", "--run-dir", scratch.path + "/run-second", "--watchdog", "none",
                                         "--sanlock-run-dir", dir])
        #expect(second.status != 0, "a second daemon served the same sanlock run dir")
        #expect(second.stderr.contains("serves"), "\(second)")
        _ = first
    }
}

/// The daemon's debug ring keeps the newest lines within its capacity.
@Suite(.ownThreads) struct DebugRingTests {
    @Test func theOldestLinesGoFirstAndTheRingStaysWithinItsCapacity() {
        let ring = DebugRing()
        let line = String(repeating: "x", count: 1000)
        for i in 0..<2000 { ring.append("\(i) \(line)") }
        let text = ring.text
        #expect(text.utf8.count <= DebugRing.capacityBytes)
        #expect(text.hasSuffix("1999 \(line)"))
        #expect(!text.contains("\n0 x"), "the oldest line is still there")
        #expect(text.utf8.count > DebugRing.capacityBytes - 2 * 1006, "the ring dropped more than it had to")
    }
}
