import CTenureSys
import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureClient
import TenureCore
import TenureFormat
import TenureSyscall

/// `tenure client …`: talk to the running daemon.
struct Client: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask the running daemon to join lockspaces, acquire and release leases, and report.",
        discussion: """
        Every subcommand connects to RUN_DIR/tenure.sock ($TENURE_RUN_DIR, else \
        /run/tenure, or --run-dir). A lease belongs to a process: to the \
        caller, or, for root and the daemon's socket group, to --pid. It is \
        released when that process's last connection closes, or when it exits.

        Examples:
          tenure client add-lockspace -s LS:1:/dev/mapper/leases:0
          tenure client hold -r LS:vm1:/dev/mapper/leases:1M -- qemu-system-x86_64 …
          tenure client status
        """,
        subcommands: [AddLockspace.self, RemoveLockspace.self, Hold.self, Acquire.self, Release.self, Inquire.self, Convert.self,
                      Status.self, HostStatus.self, Renewal.self, LogDump.self, Request.self, Shutdown.self,
                      SetLVB.self, GetLVB.self, ReleaseOrphans.self, SetEvent.self, Index.self, Metrics.self]
    )
}

/// What an acquire asks beyond the lease: its lock value block, and
/// whether it outlives its process (TENURE_ACQUIRE_*).
struct LeaseFlags: ParsableArguments {
    @Flag(help: "Read the leases' lock value blocks (then `get-lvb`, `set-lvb`).")
    var lvb = false
    @Flag(help: "Keep the leases on this host as orphans when the process goes (release them with `release-orphans`, or adopt them with --orphan).")
    var persistent = false
    @Flag(help: "Adopt the orphan of a resource if this host keeps one, else acquire it.")
    var orphan = false
    @Flag(name: .customLong("orphan-only"), help: "Adopt the orphan of a resource, or fail.")
    var orphanOnly = false

    func wireFlags() throws -> UInt32 {
        guard !(orphan && orphanOnly) else {
            throw TenureError(.invalidArgument, "--orphan and --orphan-only ask for two things.", remedy: "Give one of them.")
        }
        return (lvb ? Wire.acquireLVB : 0) | (persistent ? Wire.acquirePersistent : 0) | (orphan ? Wire.acquireOrphan : 0)
            | (orphanOnly ? Wire.acquireOrphanOnly : 0)
    }
}

struct ClientOptions: ParsableArguments {
    @Option(name: .customLong("run-dir"), help: ArgumentHelp("The daemon's run dir (default: $TENURE_RUN_DIR, else /run/tenure).", valueName: "DIR"))
    var runDir: String?

    func connect() throws -> TenureConnection { try TenureConnection(runDir: runDir) }
}

extension Client {
    struct AddLockspace: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-lockspace",
            abstract: "Join a lockspace with this host's id (waits for the delta-lease algorithm).",
            discussion: "Example:\n  tenure client add-lockspace -s LS:1:/dev/mapper/leases:0")
        @Option(name: .customShort("s"), help: ArgumentHelp("NAME:HOST_ID:PATH:OFFSET", valueName: "LOCKSPACE"))
        var lockspace: String
        @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: "io_timeout for this lockspace (default: the daemon's).")
        var ioTimeout: Int = 0
        @Flag(name: .customLong("async"), help: "Return at once; the daemon goes on joining (see status).")
        var asynchronous = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                _ = try IOTimeout.requested(ioTimeout, what: "--io-timeout")
                let generation = try options.connect().addLockspace(lockspace, ioTimeoutSeconds: ioTimeout, async: asynchronous)
                print(asynchronous ? "Joining \(lockspace); `tenure client status` shows when it is joined." : "Joined \(lockspace) (generation \(generation)).")
            }
        }
    }

    struct RemoveLockspace: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rem-lockspace", abstract: "Leave a lockspace (refused while its leases are held).")
        @Argument(help: "The lockspace name.")
        var name: String
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                try options.connect().removeLockspace(name)
                print("Left lockspace \(name).")
            }
        }
    }

    struct Hold: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Acquire leases for this process, print their lvers, and hold them until it ends.",
            discussion: """
            Without a command, holds until killed (or --seconds pass), then releases. \
            With a command after --, this process becomes the command (exec) once the \
            leases are held: the command itself holds them, with the registration's \
            socket, a clean signal mask and default signal handling, so the daemon's \
            fencing (killpath, SIGTERM, SIGKILL) reaches it when the leases are lost or \
            forced away, and its exit releases them.

            Examples:
              tenure client hold -r LS:vm1:/dev/mapper/leases:1M --seconds 60
              tenure client hold -r LS:vm1:/dev/mapper/leases:1M -- ./use-the-disk.sh
            """)
        @Option(name: .customShort("r"), help: ArgumentHelp("A resource to acquire (repeat for several), LOCKSPACE:NAME:PATH:OFFSET[:LVER].", valueName: "RESOURCE"))
        var resources: [String]
        @Flag(help: "Acquire shared leases.")
        var shared = false
        @OptionGroup var lease: LeaseFlags
        @Option(parsing: .unconditional, help: "Release after this many seconds.")
        var seconds: Int?
        @Option(help: ArgumentHelp("A program the daemon runs instead of SIGTERM to stop this process (the pid is in $TENURE_KILL_PID); words after the first are its arguments.", valueName: "PROGRAM"))
        var killpath: String?
        @Option(help: ArgumentHelp("Restrict after acquiring: all (no further requests on this connection), sigkill (stop me with SIGKILL only), sigterm (never SIGKILL); comma-separated.", valueName: "FLAGS"))
        var restrict: String?
        @Argument(parsing: .postTerminator, help: "A command to run while holding.")
        var command: [String] = []
        @OptionGroup var options: ClientOptions

        func restrictFlags() throws -> UInt32 {
            var flags: UInt32 = 0
            for word in (restrict ?? "").split(separator: ",") {
                switch word {
                case "all": flags |= Wire.restrictAll
                case "sigkill": flags |= Wire.restrictSigkill
                case "sigterm": flags |= Wire.restrictSigterm
                default: throw TenureError(.invalidArgument, "--restrict \(word) is not a restriction.", remedy: "Use all, sigkill or sigterm.")
                }
            }
            return flags
        }

        func run() async throws {
            try await reportingErrors {
                let flags = try restrictFlags()
                if let seconds, seconds < 0 {
                    throw TenureError(.invalidArgument, "--seconds \(seconds) is negative.", remedy: "Give how long to hold, in seconds (0 or more), or leave it out to hold until killed.")
                }
                let connection = try options.connect()
                try connection.register()
                if let killpath {
                    let words = killpath.split(separator: " ").map(String.init)
                    try connection.killpath(words[0], arguments: Array(words.dropFirst()))
                }
                let states = try connection.acquire(resources, shared: shared, flags: try lease.wireFlags())
                if flags != 0 { try connection.restrict(flags) }
                print(states.joined(separator: "\n"))
                fflush(nil)
                if !command.isEmpty {
                    try becomeHolder(command, keeping: connection.fd)
                }
                if let seconds {
                    try await Task.sleep(for: .seconds(seconds))
                    // Restricted, the leases go when the connection closes.
                    if flags & Wire.restrictAll == 0 { try connection.release(["*"]) }
                    return
                }
                while true { try await Task.sleep(for: .seconds(3600)) }
            }
        }
    }

    /// Replaces this process with `command`, keeping the registration `fd`.
    static func becomeHolder(_ command: [String], keeping fd: Int32) throws -> Never {
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        do {
            try Syscall.run(SyscallContext("execvp", path: command[0])) { tenure_exec_holding(command[0], &argv, fd) }
        } catch {
            throw TenureError(error.errno == ENOENT ? .notFound : .permissionDenied, "Cannot run \(command[0]): \(error.message)",
                              remedy: "Give a program on PATH or by its path; the leases are released as this process exits.", errno: error.errno)
        }
        preconditionFailure("execvp returned without failing")
    }

    struct Acquire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Acquire leases for another process (--pid; root or the socket group).",
            discussion: "Example:\n  tenure client acquire --pid 4242 -r LS:vm1:/dev/mapper/leases:1M")
        @Option(name: .customShort("r"), help: ArgumentHelp("A resource (repeat for several).", valueName: "RESOURCE"))
        var resources: [String]
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "The process that will hold the leases.")
        var pid: Int32
        @Flag(help: "Acquire shared leases.")
        var shared = false
        @OptionGroup var lease: LeaseFlags
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                print(try options.connect().acquire(resources, pid: pid, shared: shared, flags: try lease.wireFlags()).joined(separator: "\n"))
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release leases of a process (--pid; root or the socket group).")
        @Argument(help: "Resource names, or * for all.")
        var names: [String] = ["*"]
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "The process whose leases to release.")
        var pid: Int32
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                try options.connect().release(names, pid: pid)
                print("Released.")
            }
        }
    }

    struct Inquire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the state string of a process's leases (resource strings with lvers).")
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "The process.")
        var pid: Int32
        @Flag(help: "Print JSON: {\"pid\": …, \"leases\": [state strings]}.")
        var json = false
        @OptionGroup var options: ClientOptions

        struct Result: Encodable {
            let pid: Int32
            let leases: [String]
        }

        func run() async throws {
            try await reportingErrors {
                let state = try options.connect().inquire(pid: pid)
                print(json ? Terminal.json(Result(pid: pid, leases: state.split(separator: " ").map(String.init))) : state)
            }
        }
    }

    struct Convert: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a lease a process holds between shared and exclusive.",
            discussion: "Example:\n  tenure client convert vm1 --pid 4242 --shared")
        @Argument(help: "The resource name.")
        var name: String
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "The process holding it.")
        var pid: Int32
        @Flag(exclusivity: .exclusive, help: "Convert to shared, or to exclusive.")
        var mode: Mode
        @OptionGroup var options: ClientOptions

        enum Mode: String, EnumerableFlag { case shared, exclusive }

        func run() async throws {
            try await reportingErrors { print(try options.connect().convert(name, shared: mode == .shared, pid: pid)) }
        }
    }

    struct Renewal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the recent renewals of a lockspace: timestamp, read and write times, and failures after each.",
            discussion: "Example:\n  tenure client renewal LS")
        @Argument(help: "The lockspace name.")
        var lockspace: String
        @Flag(help: "Print JSON: a list of {timestamp, read_ms, write_ms, next_timeouts, next_errors}.")
        var json = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let text = try options.connect().renewal(lockspace)
                guard json else { return print(text) }
                // Each line is sanlock's `key=value …`: the same keys as JSON numbers.
                let records = text.split(separator: "\n").map { line in
                    Dictionary(line.split(separator: " ").compactMap { word -> (String, Int)? in
                        let kv = word.split(separator: "=", maxSplits: 1)
                        guard kv.count == 2, let n = Int(kv[1]) else { return nil }
                        return (String(kv[0]), n)
                    }, uniquingKeysWith: { a, _ in a })
                }
                print(JSON.text(records))
            }
        }
    }

    struct LogDump: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log-dump",
            abstract: "Print the daemon's recent log, debug lines included whatever its --log-level.")
        @Flag(help: "Print JSON: the lines as a list.")
        var json = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let text = try options.connect().logDump()
                guard json else { return print(text) }
                let lines = text.split(separator: "\n").map(String.init)
                print(JSON.text(lines))
            }
        }
    }

    struct HostStatus: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "host-status",
            abstract: "Print every host of a lockspace and its state as this host sees it.",
            discussion: "Examples:\n  tenure client host-status LS\n  tenure client host-status LS --json")
        @Argument(help: "The lockspace name.")
        var lockspace: String
        @Flag(help: "Print JSON.")
        var json = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let text = try options.connect().hostStatus(lockspace)
                guard !json else { return print(text) }
                let object = try JSON.value(text) as? [String: Any] ?? [:]
                let rows = (object["hosts"] as? [[String: Any]] ?? []).map { h in
                    ["\(h["host_id"] ?? "")", "\(h["state"] ?? "")", "\(h["generation"] ?? "")", "\(h["timestamp"] ?? "")", "\(h["io_timeout"] ?? "")", "\(h["name"] ?? "")"]
                }
                print(Terminal.table(["host id", "state", "gen", "timestamp", "io_timeout", "name"], rows))
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the daemon's lockspaces (with renewal delays) and the leases it holds for processes.",
            discussion: """
            With --detail, also: per lockspace the age of the last successful renewal \
            and of the last attempt, and the read and write times of its latest \
            renewals; the processes being fenced; how long each lease has been held.

            Examples:
              tenure client status
              tenure client status --detail
              tenure client status --json | jq '.lockspaces[].last_renewal_age_ms'
            """)
        @Flag(help: "Print JSON.")
        var json = false
        @Flag(help: "Add renewal ages and latencies, fenced processes, and how long each lease has been held.")
        var detail = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let text = try options.connect().status()
                guard !json else { print(text); return }
                let object = try JSON.value(text) as? [String: Any] ?? [:]
                print("host \(object["host_name"] ?? "?")\((object["shutting_down"] as? Bool) == true ? " (shutting down)" : "")")
                let spaces = (object["lockspaces"] as? [[String: Any]] ?? []).map { l in
                    ["\(l["name"] ?? "")", "\(l["host_id"] ?? "")", "\(l["generation"] ?? "")", (l["valid"] as? Bool) == true ? "valid" : "LOST",
                     "\(l["renewals"] ?? 0)", "\(l["failed_renewals"] ?? 0)", "\(l["worst_renewal_gap_ms"] ?? 0) ms", "\(l["path"] ?? ""):\(l["offset"] ?? "")"]
                }
                print(Terminal.table(["lockspace", "host id", "gen", "state", "renewals", "failed", "worst gap", "where"], spaces))
                var leases = (object["leases"] as? [[String: Any]] ?? []).map { l in
                    ["\(l["pid"] ?? "")", "\(l["lver"] ?? "")", (l["shared"] as? Bool) == true ? "shared" : "exclusive", "\(l["resource"] ?? "")"]
                }
                // Kept by the host for a persistent holder that is gone.
                leases += (object["orphans"] as? [String] ?? []).map { state in
                    let shared = state.hasSuffix(":SH")
                    return ["orphan", shared ? "-" : String(state.split(separator: ":").last ?? ""), shared ? "shared" : "exclusive", state]
                }
                print(leases.isEmpty ? "no leases held" : Terminal.table(["pid", "lver", "mode", "resource"], leases))
                if detail { printDetail(object) }
            }
        }
    }
}

extension Client.Status {
    /// The operator's view after trouble: renewal ages and latencies,
    /// fencing, and lease ages.
    func printDetail(_ object: [String: Any]) {
        func ms(_ value: Any?) -> String {
            guard let n = value as? Int, n >= 0 else { return "-" }
            return n >= 10_000 ? "\(n / 1000) s" : "\(n) ms"
        }
        for l in object["lockspaces"] as? [[String: Any]] ?? [] {
            print("")
            print("lockspace \(l["name"] ?? ""): last renewal \(ms(l["last_renewal_age_ms"])) ago, last attempt \(ms(l["last_attempt_age_ms"])) ago")
            let recent = (l["recent_renewals"] as? [[String: Any]] ?? []).reversed().map { r in
                ["\(r["timestamp"] ?? "")", "\(r["read_ms"] ?? "") ms", "\(r["write_ms"] ?? "") ms", "\(r["timeouts_after"] ?? 0)", "\(r["errors_after"] ?? 0)"]
            }
            print(recent.isEmpty ? "  no renewal yet" : Terminal.table(["timestamp", "read", "write", "timeouts after", "errors after"], Array(recent)))
        }
        let fencing = (object["fencing"] as? [Int] ?? []).map(String.init)
        print("")
        print(fencing.isEmpty ? "no process being fenced" : "being fenced: \(fencing.joined(separator: ", "))")
        let held = (object["leases"] as? [[String: Any]] ?? []).map { l in ["\(l["pid"] ?? "")", ms(l["held_ms"]), "\(l["resource"] ?? "")"] }
        if !held.isEmpty { print(Terminal.table(["pid", "held for", "resource"], held)) }
    }
}

extension Client {
    struct Request: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the holder of a lease to give it up (--force: its holder is killed).",
            discussion: "Example:\n  tenure client request -r LS:vm1:/dev/mapper/leases:1M --force")
        @Option(name: .customShort("r"), help: ArgumentHelp("LOCKSPACE:NAME:PATH:OFFSET[:LVER]", valueName: "RESOURCE"))
        var resource: String
        @Flag(help: "Kill the holder (SIGKILL).")
        var force = false
        @Flag(help: "Ask the holder to stop (its killpath or SIGTERM, then SIGKILL after the grace).")
        var graceful = false
        @OptionGroup var options: ClientOptions

        func validate() throws {
            guard force != graceful else { throw ValidationError("Give exactly one of --force or --graceful.") }
        }

        func run() async throws {
            try await reportingErrors {
                try options.connect().request(resource, force: force)
                print("Requested \(resource)\(force ? " (force)" : "").")
            }
        }
    }

    struct Shutdown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the daemon (refused while leases are held, unless --force kills their holders).")
        @Flag(help: "Kill the holders of leases first.")
        var force = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                try options.connect().shutdown(force: force)
                print("The daemon is shutting down.")
            }
        }
    }
}

extension Client {
    struct SetLVB: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-lvb",
            abstract: "Set the lock value block of a lease a process holds (acquired with --lvb); it is written before the release.",
            discussion: """
            The block is one sector of the lease's area: the next holder that acquires \
            with --lvb reads what the last one set. Give text, or bytes as --hex.

            Examples:
              tenure client set-lvb vm1 --pid 4242 --text "version 7"
              tenure client set-lvb vm1 --pid 4242 --hex 0700000000000000
            """)
        @Argument(help: "The resource name.")
        var name: String
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "The process holding it.")
        var pid: Int32
        @Option(help: "The block as text.")
        var text: String?
        @Option(help: "The block as hex digits.")
        var hex: String?
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let bytes: [UInt8]
                switch (text, hex) {
                case (let text?, nil): bytes = Array(text.utf8)
                case (nil, let hex?):
                    guard let decoded = Hex.decode(hex) else {
                        throw TenureError(.invalidArgument, "--hex \(hex) is not an even number of hex digits.")
                    }
                    bytes = decoded
                default:
                    throw TenureError(.invalidArgument, "set-lvb takes the block as --text or as --hex, one of them.")
                }
                try options.connect().setLVB(name, bytes, pid: pid)
                print("Set the lock value block of \(name) (\(bytes.count) bytes).")
            }
        }
    }

    struct GetLVB: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "get-lvb",
            abstract: "Print the lock value block of a lease a process holds (acquired with --lvb).",
            discussion: "Prints it as text up to the first NUL, or all of it as hex with --hex.\n\nExample:\n  tenure client get-lvb vm1 --pid 4242")
        @Argument(help: "The resource name.")
        var name: String
        @Option(name: [.customShort("p"), .long], parsing: .unconditional, help: "The process holding it.")
        var pid: Int32
        @Flag(help: "Print the whole block as hex.")
        var hex = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let digits = try options.connect().getLVB(name, pid: pid)
                guard !hex else { return print(digits) }
                let bytes = Hex.decode(digits) ?? []
                print(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
            }
        }
    }

    struct ReleaseOrphans: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "release-orphans",
            abstract: "Release leases this host keeps as orphans (their persistent holders are gone). Root only.",
            discussion: "Example:\n  tenure client release-orphans LS vm1\n  tenure client release-orphans LS")
        @Argument(help: "The lockspace name.")
        var lockspace: String
        @Argument(help: "Resource names (default: every orphan of the lockspace).")
        var names: [String] = []
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                try options.connect().releaseOrphans(lockspace, names)
                print("Released.")
            }
        }
    }

    struct Index: AsyncParsableCommand {
        enum Action: String, ExpressibleByArgument, CaseIterable {
            case lookup, create, delete
        }

        static let configuration = CommandConfiguration(
            abstract: "Use a resource index: find a lease's area, create a lease in a free one, or delete one.",
            discussion: """
            A resource index (laid out by sanlock's format_rindex, or `sanlock client \
            format -x`) lists the leases of a lockspace by name, so that programs need \
            not keep their offsets. It is the same index, and the same code, as \
            sanlock's clients use through the daemon.

              lookup   by --name, by --offset, or neither (the first free area)
              create   lays out a new lease named --name in the first free area and \
            lists it (administrators: root, the daemon's user, the socket group)
              delete   unlists --name and clears its area; refused while the lease \
            is held anywhere (administrators)

            The lockspace must be joined on this host.

            Examples:
              tenure client index create -x LS:/dev/mapper/leases:3M --name vm1
              tenure client index lookup -x LS:/dev/mapper/leases:3M --name vm1
              tenure client index delete -x LS:/dev/mapper/leases:3M --name vm1
            """)
        @Argument(help: "lookup, create or delete.")
        var action: Action
        @Option(name: [.customShort("x"), .customLong("index")], help: ArgumentHelp("The index: LOCKSPACE:PATH:OFFSET.", valueName: "INDEX"))
        var index: String
        @Option(help: "The resource's name.")
        var name: String?
        @Option(help: "The resource lease's byte offset (lookup).")
        var offset: UInt64?
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                if action != .lookup, name == nil {
                    throw TenureError(.invalidArgument, "index \(action.rawValue) needs --name.", remedy: "Name the resource, e.g. --name vm1.")
                }
                _ = try IndexSpec(parsing: index)
                let entry = try options.connect().index(action.rawValue, index, name: name ?? "", offset: offset ?? 0)
                switch action {
                case .lookup: print(entry.name.isEmpty ? "free area at \(entry.offset)" : "\(entry.name) at \(entry.offset)")
                case .create: print("created \(entry.name) at \(entry.offset)")
                case .delete: print("deleted \(entry.name) at \(entry.offset)")
                }
            }
        }
    }

    struct SetEvent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-event",
            abstract: "Send a host event to another host of a lockspace, through this host's delta lease. Root only.",
            discussion: """
            The event rides in this host's next renewals; the other host's daemon \
            delivers it to the programs listening there (sanlock's reg_event, as \
            sanlk-reset does). Events and data are numbers the programs agree on.

            Example:
              tenure client set-event LS --host-id 2 --event 1 --data 0
            """)
        @Argument(help: "The lockspace name.")
        var lockspace: String
        @Option(name: .customLong("host-id"), parsing: .unconditional, help: "The host to send it to.")
        var hostID: UInt64?
        @Flag(name: .customLong("all-hosts"), help: "Send it to every other host instead.")
        var allHosts = false
        @Option(parsing: .unconditional, help: "The event (from 1).")
        var event: UInt64
        @Option(parsing: .unconditional, help: "Its data.")
        var data: UInt64 = 0
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                guard (hostID != nil) != allHosts else {
                    throw TenureError(.invalidArgument, "set-event takes --host-id N or --all-hosts, one of them.")
                }
                try options.connect().setEvent(lockspace, host: hostID, event: event, data: data)
                print("Event \(event) set for \(hostID.map { "host \($0)" } ?? "every other host").")
            }
        }
    }
}


extension Client {
    struct Metrics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the daemon's metrics in Prometheus's text format.",
            discussion: """
            Renewals, failed renewals and their latency histogram per lockspace, the \
            age of the last renewal; acquires, refusals, requests and releases; \
            fencing and its duration; I/O timeouts per device; leases held; resident \
            memory. The daemon also serves them over HTTP with --metrics-listen.

            Example:
              tenure client metrics | grep tenure_renewal
            """)
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors { print(try options.connect().metrics(), terminator: "") }
        }
    }
}
