import Synchronization
import Testing
import TenureCore
import TenureTestKit

@Suite("SimulatedProcesses: the simulator's side of the process seam")
struct SimulatedProcessesTests {
    /// Collects the stops the driver is told of.
    final class Stops: Sendable {
        let seen = Mutex<[(ProcessID, StopSignal)]>([])
        var all: [(ProcessID, StopSignal)] { seen.withLock { $0 } }
    }

    func machine() -> (SimulatedProcesses, Stops) {
        let stops = Stops()
        return (SimulatedProcesses(willStop: { pid, signal in stops.seen.withLock { $0.append((pid, signal)) } }), stops)
    }

    @Test func aSignalStopsAnOrdinaryProcessOnceAndItsExitWaitsForTheFenceLoop() {
        let (m, stops) = machine()
        let p = ProcessID(7)
        m.start(p, .init())
        #expect(m.signal(p, .terminate))
        #expect(m.signal(p, .kill), "delivered, but it is already stopping")
        #expect(stops.all.count == 1 && stops.all[0].0 == p && stops.all[0].1 == .terminate)
        #expect(!m.hasExited(p), "dying takes the driver's time")
        #expect(m.end(p))
        #expect(m.hasExited(p) && !m.isRunning(p))
        #expect(!m.signal(p, .kill), "nothing to signal once gone")
        #expect(!m.end(p), "ends once")
        #expect(m.takeExits() == [p])
        #expect(m.takeExits().isEmpty)
    }

    @Test func aStuckProcessIgnoresEverySignalAndOneHandlingSIGTERMOnlySIGKILL() {
        let (m, stops) = machine()
        let stuck = ProcessID(1), stubborn = ProcessID(2)
        m.start(stuck, .init(stuck: true))
        m.start(stubborn, .init(ignoresTerm: true))
        #expect(m.signal(stuck, .kill) && m.signal(stuck, .terminate))
        #expect(m.runKillpath(["/bin/true"], for: stubborn))
        #expect(m.signal(stubborn, .terminate))
        #expect(stops.all.isEmpty)
        #expect(m.signal(stubborn, .kill))
        #expect(stops.all.map(\.0) == [stubborn])
        #expect(m.statistics == .init(signals: 4, killpaths: 1, ignored: 4))
    }

    @Test func aResetEndsEveryProcessWithNothingToReportAndAnExitReportedByTheDriverIsNotQueued() {
        let (m, _) = machine()
        m.start(ProcessID(1), .init())
        m.start(ProcessID(2), .init(stuck: true))
        m.end(ProcessID(1), reported: true)
        #expect(m.takeExits().isEmpty)
        m.reset()
        #expect(m.hasExited(ProcessID(2)) && m.takeExits().isEmpty)
    }
}
