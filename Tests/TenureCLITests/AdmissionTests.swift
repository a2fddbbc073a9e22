import Glibc
import Testing
import TenureClient
import TenureSanlockWire
@testable import TenureDaemon

/// The one admission table (issue 28), request kind by request kind: every
/// request of either protocol maps to an `Operation`, the operations both
/// protocols carry map alike, and each operation's decision for each kind
/// of peer is the documented one (docs/operations.md, "Privileges") —
/// the same whichever socket the peer came through, since both sockets
/// build a peer from its credentials in one place.
@Suite struct AdmissionTests {
    /// The five kinds of peer, built as the accept path builds them.
    static let peers: [(String, Peer)] = {
        let daemonUser = geteuid()
        func peer(_ uid: UInt32, group: Bool) -> Peer {
            Peer(connection: 1, pid: 4242, uid: uid, gid: uid, isAdmin: Peer.isAdministrator(uid: uid, inSocketGroup: group), inSocketGroup: group)
        }
        return [("root", peer(0, group: false)), ("the daemon's user", peer(daemonUser, group: false)),
                ("a socket-group member", peer(60_001, group: true)), ("a same-user client", peer(60_002, group: false)),
                ("a stranger", peer(60_003, group: false))]
    }()

    /// What docs/operations.md promises, written out again independently of `Operation.needs`.
    static let administrative: Set<String> = ["addLockspace", "remLockspace", "request", "shutdown", "releaseOrphans", "setEvent", "setConfig",
                                              "writeLockspace", "writeResource", "formatIndex", "rebuildIndex", "updateIndex", "createResource", "deleteResource"]

    @Test(arguments: Operation.allCases)
    func eachKindOfPeerGetsTheDocumentedDecision(_ operation: Operation) {
        for (who, peer) in Self.peers {
            let administrator = who == "root" || who == "the daemon's user" || who == "a socket-group member"
            let expected = !Self.administrative.contains(operation.rawValue) || administrator
            #expect(operation.admits(peer) == expected, "\(operation) for \(who)")
        }
    }

    /// The requests both protocols carry become the same operation.
    @Test func theSharedRequestsMapAlike() throws {
        let disk = SanlockDisk(path: "/var/tmp/x", offset: 0)
        let ls = SanlockLockspace(name: "LS", hostID: 1, flags: 0, disk: disk)
        let resource = SanlockResource(lockspace: "LS", name: "R0", lver: 0, flags: 0, disks: [disk])
        let spec = try Daemon.resourceSpec(resource, keepLver: false)
        let lockspace = try Daemon.lockspaceSpec(ls)
        let pairs: [(SanlockRequest, DaemonRequest)] = [
            (.register, .register),
            (.addLockspace(ls, async: false, ioTimeoutSeconds: 0), .addLockspace(lockspace, hostName: nil, ioTimeout: nil, async: false)),
            (.remLockspace(ls, async: false), .remLockspace(name: "LS")),
            (.acquire(.caller, [resource], flags: 0, ownerName: ""), .acquire(pid: 0, shared: false, resources: [spec])),
            (.release(.caller, [resource], flags: 0), .release(pid: 0, names: ["R0"])),
            (.release(.caller, [resource], flags: SanlockFlags.releaseOrphan), .releaseOrphans(lockspace: "LS", names: ["R0"])),
            (.inquire(.caller), .inquire(pid: 0)),
            (.convert(.caller, resource), .convert(pid: 0, name: "R0", shared: false)),
            (.request(resource, forceMode: 1), .request(resource: spec, force: true)),
            (.killpath(program: "/bin/true", arguments: "", flags: 0), .killpath(program: "/bin/true", arguments: [])),
            (.restrict(flags: 0), .restrict(flags: 0)),
            (.shutdown(force: false), .shutdown(force: false)),
            (.status(depth: 0), .status),
            (.hostStatus(lockspace: "LS"), .hostStatus(lockspace: "LS")),
            (.renewal(lockspace: "LS"), .renewal(lockspace: "LS")),
            (.logDump, .logDump),
            (.setLVB(resource, bytes: []), .setLVB(pid: 0, name: "R0", bytes: [])),
            (.getLVB(resource, length: 0), .getLVB(pid: 0, name: "R0")),
        ]
        for (sanlock, tenure) in pairs {
            #expect(sanlock.operation == tenure.operation, "\(sanlock) is \(sanlock.operation), \(tenure) is \(tenure.operation)")
        }
    }
}
