import Testing
import TenureCore
import TenureEngine
import TenureFormat
@testable import TenureHost

/// The acquire procedure both drivers run (the daemon, the simulator):
/// all or nothing, orphans adopted only by root or their own user,
/// persistence marked once everything is held.
@Suite struct AcquireProcedureTests {
    let h = HostCoreTests()

    /// Runs `procedure` to its end as a driver would, winning every ballot
    /// at `lver` unless `fail` names the resource; returns what it ended with.
    func run(_ procedure: inout AcquireProcedure, _ c: inout HostCore, lver: UInt64 = 1, fail: String? = nil) throws -> [HeldLease] {
        while true {
            switch try procedure.next(&c, at: h.at(1)) {
            case .adopted, .sharedLocally:
                continue
            case .ballot(let spec, let shared):
                let won = spec.name.description == fail ? nil : h.lease(spec, lver: lver, shared: shared)
                switch procedure.ballotEnded(&c, won: won, at: h.at(1)) {
                case .held: continue
                case .failed: throw TenureError(.heldByLiveHost, "\(spec.name) is held elsewhere")
                case .refused(let error, _): throw error
                }
            case .done(let taken):
                return taken
            }
        }
    }

    @Test func aFailureGivesUpWhatWasTakenAndMarksNothingPersistent() throws {
        var c = h.core()
        var procedure = try AcquireProcedure([try h.spec("R0"), try h.spec("R1")], for: ProcessID(10), shared: false,
                                             options: LeaseOptions(persistent: true), requester: .root, holderUID: 0, core: c)
        #expect(throws: TenureError.self) { try run(&procedure, &c, fail: "R1") }
        let abandoned = procedure.abandon(&c, at: h.at(1))
        #expect(h.releases(abandoned) == ["write 10 R0"], "R0, taken, is given up again: \(abandoned)")
        #expect(c.leases[ProcessID(10)] == nil)
        #expect(c.persistentOwners.isEmpty, "nothing was held in the end, so nothing is persistent")
        // The second resource is free to acquire again: its ballot was ended.
        var again = try AcquireProcedure([try h.spec("R1")], for: ProcessID(11), shared: false, options: LeaseOptions(),
                                         requester: .root, holderUID: 0, core: c)
        #expect(try run(&again, &c).count == 1)
    }

    @Test func anOrphanIsAdoptedByRootOrItsOwnUserOnly() throws {
        var c = h.core()
        var first = try AcquireProcedure([try h.spec("R0")], for: ProcessID(10), shared: false, options: LeaseOptions(persistent: true),
                                         requester: Requester(uid: 1000, isRoot: false), holderUID: 1000, core: c)
        _ = try run(&first, &c, lver: 5)
        #expect(c.persistentOwners["LS:R0"] == 1000)
        _ = c.processExited(ProcessID(10), at: h.at(2))
        #expect(c.orphans.keys.sorted() == ["LS:R0"])
        let adopt = LeaseOptions(adoptOrphan: true, orphanOnly: true)
        // Another user (a socket-group member, say) is refused.
        var stranger = try AcquireProcedure([try h.spec("R0")], for: ProcessID(11), shared: false, options: adopt,
                                            requester: Requester(uid: 2000, isRoot: false), holderUID: 2000, core: c)
        #expect(throws: TenureError.self) { try run(&stranger, &c) }
        #expect(c.orphans.count == 1, "a refused adoption leaves the orphan")
        // Its own user adopts it, at its lver; after that it is no orphan.
        var owner = try AcquireProcedure([try h.spec("R0")], for: ProcessID(12), shared: false, options: adopt,
                                         requester: Requester(uid: 1000, isRoot: false), holderUID: 1000, core: c)
        let adopted = try run(&owner, &c)
        #expect(adopted.map(\.lver) == [LeaseVersion(5)] && c.orphans.isEmpty && c.persistentOwners.isEmpty)
        // A second adoption finds nothing: orphan-only is refused.
        var twice = try AcquireProcedure([try h.spec("R0")], for: ProcessID(13), shared: false, options: adopt,
                                         requester: .root, holderUID: 0, core: c)
        #expect(throws: TenureError.self) { try run(&twice, &c) }
    }

    /// The injected bug the simulator's checker must catch: the orphan is
    /// handed to its adopter but kept as an orphan too.
    @Test func theOrphanAdoptedTwiceBugHandsOneOrphanToTwoProcesses() throws {
        var c = h.core(bugs: [.orphanAdoptedTwice])
        var first = try AcquireProcedure([try h.spec("R0")], for: ProcessID(10), shared: false, options: LeaseOptions(persistent: true),
                                         requester: .root, holderUID: 0, core: c)
        _ = try run(&first, &c)
        _ = c.processExited(ProcessID(10), at: h.at(2))
        let adopt = LeaseOptions(adoptOrphan: true, orphanOnly: true)
        for pid: Int32 in [11, 12] {
            var procedure = try AcquireProcedure([try h.spec("R0")], for: ProcessID(pid), shared: false, options: adopt,
                                                 requester: .root, holderUID: 0, core: c)
            _ = try run(&procedure, &c)
        }
        #expect(c.leases[ProcessID(11)]?["R0"] != nil && c.leases[ProcessID(12)]?["R0"] != nil)
    }

    /// A persistent lease released by its process is no longer persistent:
    /// a later plain acquire of it by the same process is not kept as an orphan.
    @Test func aReleasedPersistentLeaseLeavesNoMark() throws {
        var c = h.core()
        var first = try AcquireProcedure([try h.spec("R0")], for: ProcessID(10), shared: false, options: LeaseOptions(persistent: true),
                                         requester: .root, holderUID: 0, core: c)
        _ = try run(&first, &c)
        for case .writeRelease(_, let lease) in try c.release(["R0"], of: ProcessID(10), at: h.at(2)) { c.releaseWritten(lease) }
        #expect(c.persistentOwners.isEmpty)
        var plain = try AcquireProcedure([try h.spec("R0")], for: ProcessID(10), shared: false, options: LeaseOptions(),
                                         requester: .root, holderUID: 0, core: c)
        _ = try run(&plain, &c, lver: 2)
        #expect(h.releases(c.processExited(ProcessID(10), at: h.at(3))) == ["write 10 R0"])
        #expect(c.orphans.isEmpty)
    }
}

/// Found by the simulator once its workload had persistent leases (swarm
/// seed 2015): a persistent sharer exits while another local process shares
/// the lease, leaving an orphan; releasing that orphan wrote the release —
/// stripping the host's one shared mark from under the live sharer — and
/// another host took the lease exclusively beside it.
@Suite struct OrphanBesideASharerTests {
    let h = HostCoreTests()

    @Test func releasingAnOrphanALocalProcessSharesWritesNothing() throws {
        var c = h.core()
        h.acquireShared(&c, pid: 10, persistentOwner: 0)
        h.acquireShared(&c, pid: 11, persistentOwner: nil)
        #expect(h.releases(c.processExited(ProcessID(10), at: h.at(2))).isEmpty)
        #expect(c.orphans.keys.sorted() == ["LS:R0"], "the persistent sharer left an orphan")
        let released = try c.releaseOrphans(["*"], in: HostCoreTests.ls, at: h.at(3))
        #expect(h.releases(released) == ["forget 0 R0"], "the release was written under a live sharer: \(released)")
        #expect(c.leases[ProcessID(11)]?["R0"] != nil)
        // The last sharer's own release is the one written.
        #expect(h.releases(try c.release(["R0"], of: ProcessID(11), at: h.at(4))) == ["write 11 R0"])
    }
}

extension HostCoreTests {
    /// `pid` shares R0 (the first ballot, then local shares), persistent for `persistentOwner`.
    func acquireShared(_ c: inout HostCore, pid: Int32, persistentOwner: UInt32?) {
        do {
            let s = try spec("R0", shared: true)
            try acquire(&c, "R0", pid: pid, lver: 1, shared: true)
            if let owner = persistentOwner { c.markPersistent(s, of: ProcessID(pid), owner: owner) }
        } catch {
            Issue.record("acquiring R0 shared failed: \(error)")
        }
    }
}

/// Found by the simulator (swarm seed 90009063): a persistent holder was
/// stopped by a forced request while its convert to shared was under way;
/// the downgrade's freed leader landed, another host took the lease
/// shared, and this host's orphan — still exclusive in the core — was
/// adopted as exclusive beside it. A convert to shared now counts the
/// lease shared from its start.
@Suite struct ConvertToSharedTests {
    let h = HostCoreTests()

    @Test func aLeaseBeingConvertedToSharedIsSharedForEverythingThatFollows() throws {
        var c = h.core()
        var first = try AcquireProcedure([try h.spec("R0")], for: ProcessID(10), shared: false, options: LeaseOptions(persistent: true),
                                         requester: .root, holderUID: 0, core: c)
        _ = try AcquireProcedureTests().run(&first, &c, lver: 4)
        guard case .run(let asItWas) = try c.prepareConvert("R0", of: ProcessID(10), toShared: true, at: h.at(2)) else {
            Issue.record("no convert to run")
            return
        }
        #expect(!asItWas.shared, "the engine converts the lease as it was")
        #expect(c.leases[ProcessID(10)]?["R0"]?.shared == true, "the core counts it shared before the I/O")
        // The holder dies before the convert's answer: its orphan is shared,
        // and its release would free a leader still naming this host.
        _ = c.processExited(ProcessID(10), at: h.at(3))
        let orphan = try #require(c.orphans["LS:R0"])
        #expect(orphan.shared && orphan.leaderMayBeOurs)
        var adopt = try AcquireProcedure([try h.spec("R0")], for: ProcessID(11), shared: false, options: LeaseOptions(adoptOrphan: true, orphanOnly: true),
                                         requester: .root, holderUID: 0, core: c)
        #expect(try AcquireProcedureTests().run(&adopt, &c).map(\.shared) == [true], "adopted as exclusive")
    }
}

/// sanlock's set_config, as lvmlockd uses it: a lockspace marked used is not left.
@Suite struct LockspaceUseTests {
    let h = HostCoreTests()

    @Test func aLockspaceMarkedUsedIsNotLeftUntilUnmarked() throws {
        var c = h.core()
        c.markUsed(HostCoreTests.ls, true)
        #expect(throws: TenureError.self) { try c.checkMayLeave(HostCoreTests.ls) }
        c.markUsed(HostCoreTests.ls, false)
        try c.checkMayLeave(HostCoreTests.ls)
        c.markUsed(HostCoreTests.ls, true)
        c.lockspaceLeft(HostCoreTests.ls)
        #expect(c.externallyUsed.isEmpty, "the mark outlived its lockspace")
    }
}

/// sanlock's SANLK_REL_RENAME, decided in the core: only an exclusive
/// holder's lease, and the rename lasts as long as its release's write.
@Suite struct ReleaseRenamingTests {
    let h = HostCoreTests()

    @Test func anExclusiveLeaseIsReleasedUnderItsNewName() throws {
        var c = h.core()
        try h.acquire(&c, "R0", pid: 10, lver: 1)
        let directives = try c.releaseRenaming("R0", of: HostCoreTests.ls, by: ProcessID(10), to: "R0-retired", at: h.at(2))
        #expect(h.releases(directives) == ["write 10 R0"])
        let lease = try #require(directives.compactMap { if case .writeRelease(_, let l) = $0 { l } else { nil } }.first)
        #expect(c.renameOnRelease(of: lease) == LeaseName("R0-retired"))
        c.releaseWritten(lease)
        #expect(c.renameOnRelease(of: lease) == nil, "the rename outlived its write")
    }

    @Test func aSharedLeaseOrANameNotHeldIsRefused() throws {
        var c = h.core()
        h.acquireShared(&c, pid: 10, persistentOwner: nil)
        #expect(throws: TenureError.self) { try c.releaseRenaming("R0", of: HostCoreTests.ls, by: ProcessID(10), to: "X", at: h.at(2)) }
        #expect(throws: TenureError.self) { try c.releaseRenaming("R9", of: HostCoreTests.ls, by: ProcessID(10), to: "X", at: h.at(2)) }
        #expect(c.leases[ProcessID(10)]?["R0"] != nil, "a refused rename released the lease")
    }
}

/// Joins, decided in the core: one join of a name at a time, none of a
/// name joined already.
@Suite struct JoinTests {
    let h = HostCoreTests()

    @Test func aSecondJoinOfANameIsRefusedUntilTheFirstEnds() throws {
        var c = h.core()
        let other = LockspaceSpec(name: "OTHER", hostID: HostID(1), disk: try LeaseDisk(path: "/var/tmp/leases", offset: 0))
        try c.beginJoin(other)
        #expect(throws: TenureError.self) { try c.beginJoin(other) }
        #expect(c.joining[other.name] != nil)
        c.joinEnded(other.name)
        try c.beginJoin(other)
        let joined = LockspaceSpec(name: HostCoreTests.ls, hostID: HostID(1), disk: try LeaseDisk(path: "/var/tmp/leases", offset: 0))
        #expect(throws: TenureError.self) { try c.beginJoin(joined) }
    }
}
