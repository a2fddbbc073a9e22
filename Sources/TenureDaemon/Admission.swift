import TenureCore
import TenureClient

/// Who may do what (docs/operations.md, "Privileges"), the same on both
/// sockets:
/// - anyone who can connect (the sockets are 0660: root, the daemon's user,
///   the socket group) registers, acquires, releases, converts and
///   inquires its *own* leases, sets its own killpath and restrictions,
///   and reads;
/// - an administrator — root, the daemon's own user, or a member of the
///   socket group (`--socket-group`, as everyone who may open sanlock's
///   socket is for sanlock) — also joins and leaves lockspaces, requests
///   leases (which signals their holders), lays out areas, sends host
///   events and stops the daemon;
/// - what reaches *processes* beyond the caller's own is root's (or the
///   daemon user's) alone: acting for a process that never registered,
///   adopting another user's orphan (``Daemon/target(_:_:)``,
///   ``HostCore/adoptOrphan(_:for:by:at:)``).
enum Privilege: Sendable, Equatable {
    case anyone
    case admin
}

/// Every kind of request either socket carries, by what admission looks
/// at: the one table of privileges, whichever protocol a request came in.
enum Operation: String, Sendable, CaseIterable {
    case register, acquire, release, inquire, convert, killpath, restrict
    case addLockspace, remLockspace, request, shutdown, releaseOrphans, setEvent, setConfig
    case status, hosts, renewal, logDump, metrics, inquireLockspace, listLockspaces, examine, version
    case listenForEvents, endEvents
    case setLVB, getLVB
    case writeLockspace, writeResource, readLockspace, readResource, readResourceOwners, align
    case formatIndex, rebuildIndex, lookupIndex, updateIndex, createResource, deleteResource

    /// What it needs of its sender.
    var needs: Privilege {
        switch self {
        case .addLockspace, .remLockspace, .request, .shutdown, .releaseOrphans, .setEvent, .setConfig,
             .writeLockspace, .writeResource, .formatIndex, .rebuildIndex, .updateIndex, .createResource, .deleteResource:
            .admin
        case .register, .acquire, .release, .inquire, .convert, .killpath, .restrict, .status, .hosts, .renewal, .logDump,
             .metrics, .inquireLockspace, .listLockspaces, .examine, .version, .listenForEvents, .endEvents,
             .setLVB, .getLVB, .readLockspace, .readResource, .readResourceOwners, .align, .lookupIndex:
            .anyone
        }
    }

    /// Whether a daemon that is shutting down still takes it: releases,
    /// and what only reads.
    var whileShuttingDown: Bool {
        switch self {
        case .release, .inquire, .status, .hosts, .renewal, .logDump, .metrics, .inquireLockspace, .listLockspaces,
             .examine, .version, .endEvents, .getLVB, .readLockspace, .readResource, .readResourceOwners, .align, .lookupIndex:
            true
        default:
            false
        }
    }

    /// Whether `peer` has the privilege it needs: the whole decision, a
    /// function of the operation and the peer alone.
    func admits(_ peer: Peer) -> Bool {
        needs == .anyone || peer.isAdmin
    }

    /// What it does, for a refusal: "join a lockspace".
    var purpose: String {
        switch self {
        case .addLockspace: "join a lockspace"
        case .remLockspace: "leave a lockspace"
        case .request: "request another holder's lease"
        case .shutdown: "stop the daemon"
        case .releaseOrphans: "release orphan leases"
        case .setEvent: "send a host event"
        case .setConfig: "mark a lockspace used"
        case .writeLockspace: "lay out a lockspace area"
        case .writeResource: "lay out a resource area"
        case .formatIndex: "format a resource index"
        case .rebuildIndex: "rebuild a resource index"
        case .updateIndex: "change a resource index"
        case .createResource: "create a resource lease"
        case .deleteResource: "delete a resource lease"
        default: rawValue
        }
    }
}

extension Request {
    /// Its kind, for admission: what it needs does not depend on the
    /// socket it came through.
    var operation: Operation {
        switch self {
        case .register: .register
        case .acquire: .acquire
        case .release, .releaseRenaming: .release
        case .releaseOrphans: .releaseOrphans
        case .inquire: .inquire
        case .convert: .convert
        case .killpath: .killpath
        case .restrict: .restrict
        case .setLVB: .setLVB
        case .getLVB: .getLVB
        case .addLockspace: .addLockspace
        case .remLockspace: .remLockspace
        case .inquireLockspace: .inquireLockspace
        case .listLockspaces: .listLockspaces
        case .hosts: .hosts
        case .renewal: .renewal
        case .markUsed: .setConfig
        case .listenForEvents: .listenForEvents
        case .endEvents: .endEvents
        case .setEvent: .setEvent
        case .request: .request
        case .examine: .examine
        case .status: .status
        case .logDump: .logDump
        case .metrics: .metrics
        case .version: .version
        case .shutdown: .shutdown
        case .writeLockspace: .writeLockspace
        case .writeResource: .writeResource
        case .readLockspace: .readLockspace
        case .readResource: .readResource
        case .readResourceOwners: .readResourceOwners
        case .align: .align
        case .index(.format): .formatIndex
        case .index(.rebuild): .rebuildIndex
        case .index(.lookup): .lookupIndex
        case .index(.add), .index(.remove): .updateIndex
        case .index(.create): .createResource
        case .index(.delete): .deleteResource
        }
    }
}

extension Daemon {
    /// The one admission rule, for a request from either socket: a
    /// restricted connection asks nothing more, a daemon shutting down
    /// takes only releases and reads, and each operation needs its
    /// privilege. A function of the operation and the peer alone.
    func admit(_ operation: Operation, from peer: Peer) throws {
        if restricted.contains(peer.connection) {
            throw TenureError(.permissionDenied, "This connection restricted itself: it may make no further requests.",
                              remedy: "An administrator (root) acts for this process instead.")
        }
        if shuttingDown && !operation.whileShuttingDown {
            throw TenureError(.shuttingDown, "The daemon is shutting down.", remedy: "Retry once it has restarted.")
        }
        if !operation.admits(peer) {
            throw TenureError(.permissionDenied, "Only root, the daemon's own user or a member of its socket group may \(operation.purpose); process \(peer.pid) runs as user \(peer.uid).",
                              remedy: "Run the command as root, or as a member of the daemon's socket group.")
        }
    }
}
