import ArgumentParser
import TenureCore

/// `tenure`: the one command. Each subcommand is a small `AsyncParsableCommand`.
public struct TenureCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tenure",
        abstract: "Cluster-wide leases on shared storage, compatible with sanlock's on-disk format.",
        discussion: """
        Hosts that share a block device agree who may use a resource without any \
        network coordinator: each host holds a delta lease (its host id) in a \
        lockspace, and each resource is guarded by a Disk Paxos lease whose version \
        (lver) is the holder's fencing token.

        Start with `tenure direct --help` to lay out and inspect lease areas.
        """,
        version: TenureVersion.string,
        subcommands: [Demo.self, Direct.self, DaemonCommand.self, Client.self, Bench.self]
    )

    public init() {}
}

public enum TenureVersion {
    public static let string = "0.2.0"
}

/// Runs `body`, turning a `TenureError` into a message on stderr and exit status 1.
/// Everything else (usage errors, help) goes through ArgumentParser as usual.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as TenureError {
        Terminal.printError(error)
        throw ExitCode(1)
    }
}
