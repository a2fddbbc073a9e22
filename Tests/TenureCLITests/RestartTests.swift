import Foundation
import Synchronization
import Testing
import TenureTestSupport

/// A daemon's life beyond one process (issue 27): an incarnation that ends
/// while processes hold leases through it (a crash, a SIGKILL, an OOM kill)
/// leaves them running; the next one must fence them before it pets the
/// watchdog, or they run on beside the lease's next holder on another host.
@Suite("A restarted daemon fences what an earlier one left", .ownThreads, .serialized)
struct RestartTests {
    /// Watches a watchdog file from a thread of its own: at every new pet it
    /// sees, it notes whether `pid` was alive. Alive when the line is seen
    /// means alive when it was written (a process does not come back), so a
    /// note is proof of a pet while the holder lived; a pet seen late is
    /// merely not judged. Independent of the daemon: the file and /proc only.
    final class PetWitness: @unchecked Sendable {
        private let state = Mutex((armed: false, stop: false, pets: 0, whileAlive: 0))
        let path: String
        let pid: Int32

        init(path: String, pid: Int32) throws {
            self.path = path
            self.pid = pid
            let thread = Thread { [self] in
                var seen = 0
                while !state.withLock({ $0.stop }) {
                    let lines = ((try? procText(path)) ?? "").split(separator: "\n").filter { $0.hasPrefix("pet ") }.count
                    if lines > seen {
                        let alive = isAlive(pid)
                        state.withLock { s in
                            if s.armed {
                                s.pets += lines - seen
                                if alive { s.whileAlive += 1 }
                            }
                        }
                        seen = lines
                    }
                    usleep(5_000)
                }
            }
            thread.start()
        }

        /// From now on pets count (the earlier incarnation's do not).
        func arm() { state.withLock { $0.armed = true } }
        func stop() { state.withLock { $0.stop = true } }
        var pets: Int { state.withLock { $0.pets } }
        var petsWhileAlive: Int { state.withLock { $0.whileAlive } }
    }

    /// A daemon with a watchdog file whose process `pid` holds R0 through
    /// it; the daemon SIGKILLed, and a new one started at once on the same
    /// run dir and watchdog (`wrapper` sets its environment), as Restart= does.
    /// What ``killAndRestart`` leaves running; the first daemon and the
    /// holder's `client hold` are kept too (dropping them would stop them).
    struct Restarted {
        let first: RunningDaemon
        let holder: Background
        let second: RunningDaemon
        let witness: PetWitness
        var pid: Int32 { holder.process.processIdentifier }
    }

    func killAndRestart(_ scratch: Scratch, wrapper: [String] = []) throws -> Restarted {
        let watchdog = try scratch.file("watchdog", size: 0)
        let (first, file) = try DaemonTests().setUp(scratch, extra: ["--watchdog", watchdog])
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", first.runDir, "--", "/bin/sleep", "600"])
        let pid = holder.process.processIdentifier
        #expect(try eventually { try first.leases().first?["pid"] as? Int == Int(pid) }, "the holder never held R0: \(holder.output)")
        #expect(try procText(first.runDir + "/holders").contains("\(pid) "), "the record does not name the holder")
        let witness = try PetWitness(path: watchdog, pid: pid)
        kill(first.process.process.processIdentifier, SIGKILL)
        first.process.process.waitUntilExit()
        witness.arm()
        return Restarted(first: first, holder: holder, second: try RunningDaemon(scratch: scratch, extra: ["--watchdog", watchdog], wrapper: wrapper),
                         witness: witness)
    }

    @Test func aDaemonKilledAndRestartedFencesItsHolderBeforeItPets() throws {
        let scratch = try Scratch()
        let run = try killAndRestart(scratch)
        let (second, pid, witness) = (run.second, run.pid, run.witness)
        defer { kill(pid, SIGKILL) }
        defer { witness.stop() }

        #expect(eventually { !isAlive(pid) }, "the earlier incarnation's holder still runs after the restart")
        #expect(eventually { witness.pets >= 2 }, "the restarted daemon never petted its watchdog")
        #expect(witness.petsWhileAlive == 0, "the restarted daemon petted the watchdog \(witness.petsWhileAlive) times while the earlier holder ran")
        let log = second.process.output.stderr
        #expect(log.contains("an earlier incarnation of the daemon ended while processes held leases through it: \(pid) (sleep)"), "\(log)")
        #expect(log.contains("fenced process \(pid) (sleep), a lease holder of an earlier incarnation: SIGKILL"), "\(log)")
        // Nothing is held now, and a clean stop leaves no record behind.
        #expect(try second.leases().isEmpty)
        try second.clientOK(["shutdown"])
        #expect(eventually { !second.process.process.isRunning })
        #expect(!FileManager.default.fileExists(atPath: second.runDir + "/holders"), "a clean stop left the holder record")
    }

    /// The witness can fail: a daemon built to ignore what its earlier
    /// incarnation left (the injected bug the simulator also runs) pets
    /// while the earlier holder runs, and the holder lives on.
    @Test func theWitnessCatchesARestartThatPetsAtOnce() throws {
        let scratch = try Scratch()
        let run = try killAndRestart(scratch, wrapper: ["export TENURE_INJECT_BUG=rearm-after-restart"])
        let (second, pid, witness) = (run.second, run.pid, run.witness)
        defer { kill(pid, SIGKILL) }
        defer { witness.stop() }
        #expect(eventually(60) { witness.petsWhileAlive >= 2 }, "the buggy restart never petted while the holder ran: the witness cannot fail")
        #expect(isAlive(pid))
        kill(pid, SIGKILL)
        try second.clientOK(["shutdown"])
    }

    @Test func aRecordedPidThatNowNamesAnotherProcessIsLeftAlone() throws {
        let scratch = try Scratch()
        let runDir = scratch.path + "/run-nodeA"
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        chmod(runDir, 0o755)
        // A process that runs now under a recorded pid, with another start time.
        let bystander = try Background(executable: "/bin/sleep", ["600"])
        let pid = bystander.process.processIdentifier
        defer { kill(pid, SIGKILL) }
        // One 64-byte slot of the record: "PID START NAME\n", zero-padded.
        var slot = Array("\(pid) 1 sleep\n".utf8)
        slot += [UInt8](repeating: 0, count: 64 - slot.count)
        try Data(slot + [UInt8](repeating: 0, count: 64)).write(to: URL(fileURLWithPath: runDir + "/holders"))
        let daemon = try RunningDaemon(scratch: scratch)
        #expect(isAlive(pid), "the daemon killed a process that merely reuses a recorded pid")
        #expect(!daemon.process.output.stderr.contains("fenced process \(pid)"))
        #expect(daemon.process.output.stderr.contains("recorded 1 lease holder(s); none runs any more"), "the record was not read")
    }
}
