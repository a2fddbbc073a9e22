import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// The real clock: CLOCK_MONOTONIC, as sanlock uses for lease timestamps.
///
/// It never goes backwards: each reading is at least the previous one, even
/// if the kernel's clock were to step back, so durations computed from it are
/// never negative. Sleeping is Task.sleep on the suspending clock, which on
/// Linux is CLOCK_MONOTONIC too.
public final class SystemMonotonicClock: MonotonicClock {
    /// One clock for the process; every reader shares its "never backwards" floor.
    public static let shared = SystemMonotonicClock()

    private let lastReading = Mutex<UInt64>(0)

    public init() {}

    /// The current CLOCK_MONOTONIC reading, never earlier than a previous one.
    public func now() -> MonotonicInstant {
        let reading = Self.readKernelClock()
        let nanoseconds = lastReading.withLock { last in
            last = max(last, reading)
            return last
        }
        return MonotonicInstant(nanoseconds: nanoseconds)
    }

    /// Suspends until `deadline` has passed on this clock.
    /// - Throws: `CancellationError` if the task is cancelled first.
    public func sleep(until deadline: MonotonicInstant) async throws {
        // Task.sleep may wake a little early relative to this clock's readings;
        // sleep again for the rest so callers can rely on now() >= deadline.
        while true {
            let remaining = deadline - now()
            if remaining == .zero { return }
            try await Task.sleep(for: remaining, clock: .suspending)
        }
    }

    private static func readKernelClock() -> UInt64 {
        var time = timespec()
        // Fails only for a bad clock id or pointer: both bugs, which Syscall stops on.
        do {
            try Syscall.run(SyscallContext("clock_gettime", path: "CLOCK_MONOTONIC"), {
                clock_gettime(CLOCK_MONOTONIC, &time)
            })
        } catch {
            preconditionFailure("clock_gettime(CLOCK_MONOTONIC) failed: \(error)")
        }
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
