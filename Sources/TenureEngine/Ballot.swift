import TenureCore
import TenureFormat

/// Why a ballot stopped before committing. The acquirer retries with a
/// higher ballot number after a random back-off.
struct BallotAbort: Error, CustomStringConvertible {
    enum Reason {
        /// Another host started a higher ballot (Disk Paxos: "disk[d][q].mbal > dblock[p].mbal").
        case higherBallot(host: HostID, mbal: UInt64)
        /// Another host already works on a later lease version.
        case laterVersion(host: HostID, lver: LeaseVersion)
    }
    var phase: Int
    var reason: Reason
    /// Our vote if phase 2's write was issued (it may have landed): the next
    /// ballot for the same version must carry it.
    var vote: PaxosDblock?
    var description: String {
        switch reason {
        case .higherBallot(let h, let m): return "phase \(phase): host \(h) has ballot \(m)"
        case .laterVersion(let h, let l): return "phase \(phase): host \(h) works on lver \(l)"
        }
    }
}

/// One Disk Paxos ballot (Gafni & Lamport) for lease version `lver`, run by
/// `host` with ballot number `mbal` over the lease's disks.
struct Ballot {
    let resource: PaxosResource
    let host: LocalHost
    let lver: LeaseVersion
    let mbal: UInt64
    /// The mode block to keep in our dblock sector while balloting (a shared
    /// holder converting to exclusive keeps its shared mark until it wins).
    let mode: ModeBlock
    let context: EngineContext
    /// Our latest vote in this version (bal > 0), from our dblock as last
    /// read or a previous ballot of ours. Disk Paxos's phase 1 keeps it: a
    /// value this host may have decided must stay visible to later ballots.
    var previousVote: PaxosDblock? = nil
    /// This acquisition's value's timestamp (inp3): unique per acquisition
    /// of this host generation (``EngineContext/proposalStamp(above:)``).
    var proposal: DiskTimestamp

    /// What a completed ballot decided, and the dblocks its last read saw.
    struct Outcome {
        var decided: PaxosDblock
        var lastRead: [[DblockSlot]]
    }

    /// Phase 1, choose the value, phase 2. Returns the committed value
    /// (which may name another host, if one had already voted).
    func run() async throws -> Outcome {
        var dblock = PaxosDblock(mbal: mbal, lver: lver)
        if let vote = previousVote, vote.lver == lver, vote.bal > 0, !vote.inp.isNone {
            dblock.bal = vote.bal
            dblock.inp = vote.inp
            dblock.inp2 = vote.inp2
            dblock.inp3 = vote.inp3
            // A released mark stays with its vote: it is the proof that this
            // version was handed out (and given back), which a leader put
            // back by a late write is repaired from. Dropping it let a later
            // ballot for the same version adopt our old value and hand the
            // version out again (the simulator found this, seed 910354).
            dblock.flags |= vote.flags & PaxosDblock.releasedFlag
        }
        let seen1 = try await phase(1, dblock)
        dblock = choose(dblock, seen: seen1)
        do {
            let seen2 = try await phase(2, dblock)
            return Outcome(decided: dblock.sealed, lastRead: seen2)
        } catch var abort as BallotAbort {
            abort.vote = dblock
            throw abort
        }
    }

    /// Write our dblock to a majority of disks, then read every dblock from a
    /// majority; abort on a higher ballot or a later version.
    func phase(_ n: Int, _ dblock: PaxosDblock) async throws -> [[DblockSlot]] {
        try await resource.writeDblock(dblock, mode: mode, of: host.id)
        if n == 2 && InjectedBug.skipPhase2Read.isOn(in: context.injectedBugs) { return [] }
        let seen = try await resource.readDblocks(including: host.id)
        try checkForAbort(seen, ours: dblock, phase: n)
        return seen
    }

    func checkForAbort(_ seen: [[DblockSlot]], ours: PaxosDblock, phase: Int) throws {
        for disk in seen {
            for slot in disk where slot.dblock.isValid && slot.dblock.lver >= ours.lver {
                if slot.dblock.lver > ours.lver {
                    throw BallotAbort(phase: phase, reason: .laterVersion(host: slot.hostID, lver: slot.dblock.lver))
                }
                if slot.dblock.mbal > ours.mbal {
                    throw BallotAbort(phase: phase, reason: .higherBallot(host: slot.hostID, mbal: slot.dblock.mbal))
                }
            }
        }
    }

    /// Disk Paxos's choice of input: the value of the highest ballot any
    /// host has voted in for this version, else our own (us, our
    /// generation, this acquisition's proposal stamp).
    func choose(_ dblock: PaxosDblock, seen: [[DblockSlot]]) -> PaxosDblock {
        var chosen = dblock
        var best: PaxosDblock?
        for disk in seen {
            for slot in disk where slot.dblock.isValid && slot.dblock.lver == lver && !slot.dblock.inp.isNone && slot.dblock.bal > 0 {
                if slot.dblock.bal > (best?.bal ?? 0) { best = slot.dblock }
            }
        }
        if let best {
            chosen.inp = best.inp
            chosen.inp2 = best.inp2
            chosen.inp3 = best.inp3
        } else {
            chosen.inp = host.id
            chosen.inp2 = host.generation
            chosen.inp3 = proposal
        }
        chosen.bal = mbal
        return chosen
    }

    /// The first ballot number of `host` after seeing `maxSeen`: the next
    /// multiple of the stride above it, plus the host id. Matches sanlock,
    /// so mixed clusters never share a ballot number.
    ///
    /// Every operand may come from disk: an overflow (a ballot number near
    /// 2^64 in a checksum-valid dblock) is a bad record, never a trap.
    static func firstBallot(host: HostID, maxSeen: UInt64, stride: UInt64) throws(TenureError) -> UInt64 {
        guard maxSeen > 0 else { return host.rawValue }
        let (base, o1) = (maxSeen - maxSeen % stride).addingReportingOverflow(stride)
        let (first, o2) = base.addingReportingOverflow(host.rawValue)
        guard !o1, !o2 else { throw ballotOverflow(maxSeen) }
        return first
    }

    /// The next ballot number of the same host after `mbal`.
    static func nextBallot(after mbal: UInt64, stride: UInt64) throws(TenureError) -> UInt64 {
        let (next, overflow) = mbal.addingReportingOverflow(stride)
        guard !overflow else { throw ballotOverflow(mbal) }
        return next
    }

    static func ballotOverflow(_ mbal: UInt64) -> TenureError {
        TenureError(.badRecord, "A dblock holds ballot number \(mbal): no higher ballot number fits in 64 bits.",
                    remedy: "The lease record is damaged; re-initialise it once no host uses it.")
    }
}
