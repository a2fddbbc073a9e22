import ArgumentParser
import Foundation
import TenureClient
import TenureCore

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
        subcommands: [AddLockspace.self, RemoveLockspace.self, Hold.self, Acquire.self, Release.self, Inquire.self,
                      Status.self, Request.self, Shutdown.self]
    )
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
        @Option(name: .customLong("io-timeout"), help: "io_timeout for this lockspace (default: the daemon's).")
        var ioTimeout: Int = 0
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let generation = try options.connect().addLockspace(lockspace, ioTimeoutSeconds: ioTimeout)
                print("Joined \(lockspace) (generation \(generation)).")
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
            With a command after --, runs it while the leases are held: the command \
            inherits the registration, so the daemon kills it if the leases are lost.

            Examples:
              tenure client hold -r LS:vm1:/dev/mapper/leases:1M --seconds 60
              tenure client hold -r LS:vm1:/dev/mapper/leases:1M -- ./use-the-disk.sh
            """)
        @Option(name: .customShort("r"), help: ArgumentHelp("A resource to acquire (repeat for several), LOCKSPACE:NAME:PATH:OFFSET[:LVER].", valueName: "RESOURCE"))
        var resources: [String]
        @Flag(help: "Acquire shared leases.")
        var shared = false
        @Option(help: "Release after this many seconds.")
        var seconds: Int?
        @Argument(parsing: .postTerminator, help: "A command to run while holding.")
        var command: [String] = []
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                let connection = try options.connect()
                try connection.register()
                let states = try connection.acquire(resources, shared: shared)
                print(states.joined(separator: "\n"))
                fflush(nil)
                if !command.isEmpty {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: command[0].contains("/") ? command[0] : "/usr/bin/env")
                    process.arguments = command[0].contains("/") ? Array(command.dropFirst()) : command
                    try process.run()
                    process.waitUntilExit()
                    try? connection.release(["*"])
                    throw ExitCode(process.terminationStatus)
                }
                if let seconds {
                    try await Task.sleep(for: .seconds(seconds))
                    try connection.release(["*"])
                    return
                }
                while true { try await Task.sleep(for: .seconds(3600)) }
            }
        }
    }

    struct Acquire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Acquire leases for another process (--pid; root or the socket group).",
            discussion: "Example:\n  tenure client acquire --pid 4242 -r LS:vm1:/dev/mapper/leases:1M")
        @Option(name: .customShort("r"), help: ArgumentHelp("A resource (repeat for several).", valueName: "RESOURCE"))
        var resources: [String]
        @Option(help: "The process that will hold the leases.")
        var pid: Int32
        @Flag(help: "Acquire shared leases.")
        var shared = false
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors {
                print(try options.connect().acquire(resources, pid: pid, shared: shared).joined(separator: "\n"))
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release leases of a process (--pid; root or the socket group).")
        @Argument(help: "Resource names, or * for all.")
        var names: [String] = ["*"]
        @Option(help: "The process whose leases to release.")
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
        @Option(help: "The process.")
        var pid: Int32
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors { print(try options.connect().inquire(pid: pid)) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the daemon's lockspaces and leases as JSON.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await reportingErrors { print(try options.connect().status()) }
        }
    }

    struct Request: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the holder of a lease to give it up (--force: its holder is killed).",
            discussion: "Example:\n  tenure client request -r LS:vm1:/dev/mapper/leases:1M --force")
        @Option(name: .customShort("r"), help: ArgumentHelp("LOCKSPACE:NAME:PATH:OFFSET[:LVER]", valueName: "RESOURCE"))
        var resource: String
        @Flag(help: "Kill the holder (SIGKILL) instead of asking it (SIGTERM).")
        var force = false
        @OptionGroup var options: ClientOptions

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
