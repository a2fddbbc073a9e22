import Synchronization
import TenureCore

/// A simulated machine's processes behind the ``LocalProcesses`` seam: what
/// the host core's directives do to them, as the daemon's `PidfdProcesses`
/// does to real ones.
///
/// Each process has a ``Behaviour``: one stuck in the kernel ignores every
/// signal (only a reset of its machine ends it), one that handles SIGTERM
/// carries on after SIGTERM and after its killpath. Any other process stops
/// when signalled: the driver hears of it through `willStop` and ends it
/// with ``end(_:reported:)`` when it chooses (a process takes a while to
/// die), so the driver's own record of what the process holds — its
/// witness — ends at the same instant. Exits wait in order for the driver's
/// fence loop (``takeExits()``), as a pidfd's readability waits for the
/// daemon's.
public final class SimulatedProcesses: LocalProcesses, Sendable {
    public struct Behaviour: Sendable, Equatable {
        /// Ignores every signal: only a reset ends it.
        public var stuck: Bool
        /// Carries on after SIGTERM and after its killpath.
        public var ignoresTerm: Bool

        public init(stuck: Bool = false, ignoresTerm: Bool = false) {
            self.stuck = stuck
            self.ignoresTerm = ignoresTerm
        }
    }

    /// What was done to the processes, for tests and counters.
    public struct Statistics: Sendable, Equatable {
        public var signals = 0
        public var killpaths = 0
        /// Signals and killpaths that reached a process which carried on
        /// (stuck, or SIGTERM ignored).
        public var ignored = 0

        public init(signals: Int = 0, killpaths: Int = 0, ignored: Int = 0) {
            self.signals = signals
            self.killpaths = killpaths
            self.ignored = ignored
        }
    }

    private struct Running {
        var behaviour: Behaviour
        var stopping = false
    }

    private struct State {
        var running: [ProcessID: Running] = [:]
        var ended: Set<ProcessID> = []
        var unreported: [ProcessID] = []
        var statistics = Statistics()
    }

    private let state = Mutex(State())
    private let willStop: @Sendable (ProcessID, StopSignal) -> Void

    /// - Parameter willStop: called (outside any lock) when a signal or a
    ///   killpath will end a process; the driver ends it later with ``end(_:reported:)``.
    public init(willStop: @escaping @Sendable (ProcessID, StopSignal) -> Void) {
        self.willStop = willStop
    }

    /// A new process of the machine.
    public func start(_ pid: ProcessID, _ behaviour: Behaviour) {
        state.withLock { s in
            precondition(s.running[pid] == nil && !s.ended.contains(pid), "pid \(pid) reused")
            s.running[pid] = Running(behaviour: behaviour)
        }
    }

    /// Ends a process now: its own exit, or the end of a stop. Unless
    /// `reported` (the driver told the core itself), the exit waits for
    /// ``takeExits()``. False when it had ended already.
    @discardableResult
    public func end(_ pid: ProcessID, reported: Bool = false) -> Bool {
        state.withLock { s in
            guard s.running.removeValue(forKey: pid) != nil else { return false }
            s.ended.insert(pid)
            if !reported { s.unreported.append(pid) }
            return true
        }
    }

    /// The machine resets: every process is gone, nothing left to report
    /// (the core that would hear of it is gone too).
    public func reset() {
        state.withLock { s in
            s.ended.formUnion(s.running.keys)
            s.running = [:]
            s.unreported = []
        }
    }

    /// Exits not yet reported, oldest first.
    public func takeExits() -> [ProcessID] {
        state.withLock { s in
            defer { s.unreported = [] }
            return s.unreported
        }
    }

    public func isRunning(_ pid: ProcessID) -> Bool {
        state.withLock { $0.running[pid] != nil }
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    // MARK: LocalProcesses

    @discardableResult
    public func signal(_ pid: ProcessID, _ signal: StopSignal) -> Bool {
        stop(pid, by: signal, killpath: false)
    }

    /// A killpath asks the process to stop, as SIGTERM does.
    public func runKillpath(_ argv: [String], for pid: ProcessID) -> Bool {
        stop(pid, by: .terminate, killpath: true)
    }

    public func hasExited(_ pid: ProcessID) -> Bool {
        state.withLock { $0.ended.contains(pid) }
    }

    /// Delivers a stop; true when it reached a running process, whatever it did.
    private func stop(_ pid: ProcessID, by signal: StopSignal, killpath: Bool) -> Bool {
        enum Effect { case gone, ignored, alreadyStopping, stops }
        let effect: Effect = state.withLock { s in
            guard var process = s.running[pid] else { return .gone }
            if killpath { s.statistics.killpaths += 1 } else { s.statistics.signals += 1 }
            if process.behaviour.stuck || (signal == .terminate && process.behaviour.ignoresTerm) {
                s.statistics.ignored += 1
                return .ignored
            }
            if process.stopping { return .alreadyStopping }
            process.stopping = true
            s.running[pid] = process
            return .stops
        }
        if effect == .stops { willStop(pid, signal) }
        return effect != .gone
    }
}
