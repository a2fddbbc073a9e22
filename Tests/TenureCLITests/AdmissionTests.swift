import Glibc
import Testing
import TenureClient
import TenureCore
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

    /// The requests both protocols carry decode, each through its own
    /// codec, into the same typed request — and so the same operation.
    @Test func theSharedRequestsDecodeAlike() throws {
        let disk = SanlockDisk(path: "/var/tmp/x", offset: 0)
        let ls = SanlockLockspace(name: "LS", hostID: 1, flags: 0, disk: disk)
        let resource = SanlockResource(lockspace: "LS", name: "R0", lver: 0, flags: 0, disks: [disk])
        let peer = Self.peers[0].1
        func tenure(_ command: Command, _ fields: [String]) throws -> Request {
            try TenureWire.decode(Message(command, seq: 1, fields))
        }
        let same: [(SanlockRequest, Request)] = [
            (.register, try tenure(.register, [])),
            (.addLockspace(ls, async: false, ioTimeoutSeconds: 0), try tenure(.addLockspace, ["LS:1:/var/tmp/x:0"])),
            (.addLockspace(ls, async: true, ioTimeoutSeconds: 5), try tenure(.addLockspace, ["LS:1:/var/tmp/x:0", "", "5", "async"])),
            (.remLockspace(ls, async: false), try tenure(.remLockspace, ["LS"])),
            (.acquire(.caller, [resource], flags: 0, ownerName: ""), try tenure(.acquire, ["0", "0", "LS:R0:/var/tmp/x:0"])),
            (.acquire(.pid(4243), [resource], flags: 0, ownerName: ""), try tenure(.acquire, ["4243", "0", "LS:R0:/var/tmp/x:0"])),
            (.release(.caller, [resource], flags: 0), try tenure(.release, ["0", "R0"])),
            (.release(.caller, [], flags: SanlockFlags.releaseAll), try tenure(.release, ["0", "*"])),
            (.release(.caller, [resource], flags: SanlockFlags.releaseOrphan), try tenure(.releaseOrphans, ["LS", "R0"])),
            (.inquire(.caller), try tenure(.inquire, ["0"])),
            (.convert(.caller, resource), try tenure(.convert, ["0", "R0", "exclusive"])),
            (.request(resource, forceMode: 1), try tenure(.request, ["LS:R0:/var/tmp/x:0", "1"])),
            (.killpath(program: "/bin/true", arguments: "a b", flags: 0), try tenure(.killpath, ["/bin/true", "a", "b"])),
            (.restrict(flags: SanlockFlags.restrictAll | SanlockFlags.restrictSIGKILL), try tenure(.restrict, ["3"])),
            (.shutdown(force: true), try tenure(.shutdown, ["1"])),
            (.hostStatus(lockspace: "LS"), try tenure(.hostStatus, ["LS"])),
            (.renewal(lockspace: "LS"), try tenure(.renewal, ["LS"])),
            (.logDump, try tenure(.logDump, [])),
        ]
        for (sanlock, expected) in same {
            let decoded = try SanlockCodec.request(sanlock, peer: peer)
            #expect(decoded == expected, "\(sanlock) decodes to \(decoded), Tenure's to \(expected)")
            #expect(decoded.operation == expected.operation)
        }
        // Asked differently (a status view, an LVB by host rather than by
        // holder), but the same kind of request: the same admission.
        let alike: [(SanlockRequest, Request)] = [
            (.status(depth: 0), try tenure(.status, [])),
            (.setLVB(resource, bytes: []), try tenure(.setLVB, ["0", "R0", ""])),
            (.getLVB(resource, length: 0), try tenure(.getLVB, ["0", "R0"])),
            (.getHosts(lockspace: "LS", hostID: 0), try tenure(.hostStatus, ["LS"])),
            (.setEvent(lockspace: "LS", SanlockHostEvent(hostID: 2, generation: 0, event: 1, data: 0), flags: 0), try tenure(.setEvent, ["LS", "2", "1", "0"])),
            (.lookupIndex(SanlockRindex(lockspace: "LS", disk: disk), SanlockRentry(name: "R0"), flags: 0),
             try tenure(.index, ["lookup", "LS:/var/tmp/x:0", "R0", ""])),
            (.createResource(SanlockRindex(lockspace: "LS", disk: disk), SanlockRentry(name: "R0"), numHosts: 0),
             try tenure(.index, ["create", "LS:/var/tmp/x:0", "R0", ""])),
            (.deleteResource(SanlockRindex(lockspace: "LS", disk: disk), SanlockRentry(name: "R0")),
             try tenure(.index, ["delete", "LS:/var/tmp/x:0", "R0", ""])),
        ]
        for (sanlock, tenure) in alike {
            let decoded = try SanlockCodec.request(sanlock, peer: peer)
            #expect(decoded.operation == tenure.operation, "\(sanlock) is \(decoded.operation), \(tenure) is \(tenure.operation)")
        }
    }
}
