import Synchronization
import TenureCore

/// A ``Watchdog`` on a clock of the test's (or the simulator's): it only
/// records pets, and says when it would have reset the host. The driver
/// that owns the simulated machine asks ``firesAt`` and resets it then.
public final class ManualWatchdog: Watchdog, Sendable {
    public let fireTime: Duration
    private let clock: any MonotonicClock
    private struct State {
        var armedAt: MonotonicInstant
        var lastPet: MonotonicInstant?
        var pets = 0
        var closed = false
    }
    private let state: Mutex<State>

    /// Armed now: it fires `fire` from now unless petted.
    public init(clock: any MonotonicClock, fire: Duration) {
        self.clock = clock
        self.fireTime = fire
        self.state = Mutex(State(armedAt: clock.now()))
    }

    public func pet() throws(TenureError) {
        let now = clock.now()
        state.withLock { s in
            guard !s.closed else { return }
            s.lastPet = now
            s.pets += 1
        }
    }

    public func closeCleanly() { state.withLock { $0.closed = true } }

    /// When it resets the host unless petted before: nil once closed.
    public var firesAt: MonotonicInstant? {
        state.withLock { s in s.closed ? nil : (s.lastPet ?? s.armedAt) + fireTime }
    }

    /// Whether the fire time has passed without a pet at `now`.
    public func hasFired(at now: MonotonicInstant) -> Bool { firesAt.map { now >= $0 } ?? false }

    public var pets: Int { state.withLock { $0.pets } }
    public var lastPet: MonotonicInstant? { state.withLock { $0.lastPet } }
}
