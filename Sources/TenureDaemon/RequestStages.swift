import Synchronization
import TenureCore

/// Where a request's time goes inside the daemon, summed per stage for the
/// metrics (`tenure_request_stage_seconds`) and `tenure bench acquire`,
/// measured on the monotonic clock at each step of a request on Tenure's
/// socket.
final class RequestStages: Sendable {
    enum Stage: String, CaseIterable, Sendable {
        /// Taking the request off the socket: from its connection's task
        /// finding bytes to read to the message decoded.
        case read
        /// The hand-off from a connection's thread to the task answering
        /// the request. None since the daemon runs on its event loop (the
        /// request runs where it is read): never recorded, kept so that
        /// dashboards and `tenure bench`'s JSON keep their keys.
        case toTask = "to_task"
        /// The daemon's work: the decisions, the engine, the I/O
        /// (`tenure_io_wait_seconds_total` says how much of it was I/O).
        case handle
        /// The hand-off back to the connection's thread: none since the
        /// event loop, as for ``toTask``.
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
