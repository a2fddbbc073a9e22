import Synchronization
import TenureCore

/// Where a request's time goes inside the daemon, summed per stage for the
/// metrics (`tenure_request_stage_seconds`) and `tenure bench acquire`,
/// measured on the monotonic clock at each hand-off of a request on
/// Tenure's socket.
final class RequestStages: Sendable {
    enum Stage: String, CaseIterable, Sendable {
        /// From the request read off the socket, on its connection's thread,
        /// to the task that answers it running: a thread hand-off.
        case toTask = "to_task"
        /// The daemon's work: the hop onto its actor, the decisions, the I/O
        /// (`tenure_io_wait_seconds_total` says how much of it was I/O).
        case handle
        /// From the answer to the connection's thread running again: a
        /// thread hand-off.
        case toConnection = "to_connection"
        /// Encoding the reply and writing it to the socket.
        case reply
    }

    private struct Sum {
        var nanoseconds: UInt64 = 0
        var count: UInt64 = 0
    }

    private let sums = Mutex<[Stage: Sum]>([:])

    func add(_ stage: Stage, _ duration: Duration) {
        sums.withLock {
            $0[stage, default: Sum()].nanoseconds &+= duration.nanosecondsClamped
            $0[stage, default: Sum()].count += 1
        }
    }

    /// The summary's exposition lines: a sum and a count per stage.
    func lines(_ name: String) -> [String] {
        let all = sums.withLock { $0 }
        return Stage.allCases.flatMap { stage -> [String] in
            let sum = all[stage] ?? Sum()
            return ["\(name)_sum{stage=\"\(stage.rawValue)\"} \(Double(sum.nanoseconds) / 1e9)",
                    "\(name)_count{stage=\"\(stage.rawValue)\"} \(sum.count)"]
        }
    }
}
