import Glibc
import TenureCore
import TenureEngine
import TenureFormat

/// Lock value blocks: a sector of a resource's area (sector 2002, after the
/// dblock of host 2000, where sanlock keeps it) that the holder reads when
/// it acquires with an LVB and writes, if it changed it, before it releases
/// the lease — so the next holder reads what the last one wrote (lvmlockd
/// keeps volume-group versions there).
struct LockValueBlock: Sendable {
    /// sanlock's LVB sector, in sectors from the start of the area.
    static let sector = 2002

    var bytes: [UInt8]
    /// Set by set_lvb: written before the release.
    var changed = false
}

extension Daemon {
    /// The key of a resource's LVB: lockspace and name.
    static func lvbKey(_ spec: ResourceSpec) -> String { "\(spec.lockspace):\(spec.name)" }

    static func lvbOffset(_ lease: HeldLease) -> UInt64 {
        lease.resource.disks[0].offset + UInt64(LockValueBlock.sector) * UInt64(lease.leader.sectorSize)
    }

    /// Reads the LVB of a lease just acquired (once per resource held here).
    func readLVB(of lease: HeldLease) async throws {
        let key = Self.lvbKey(lease.resource)
        guard lvbs[key] == nil else { return }
        let bytes = try await withDevice(lease.resource.disks[0].path) { device in
            try await device.read(at: Self.lvbOffset(lease), length: Int(lease.leader.sectorSize))
        }
        lvbs[key] = LockValueBlock(bytes: bytes)
    }

    /// The held lease of `lockspace:name` on this host, by any process.
    func heldLease(lockspace: LeaseName, name: LeaseName) -> HeldLease? {
        core.leases.values.lazy.flatMap(\.values).first { $0.resource.lockspace == lockspace && $0.resource.name == name }
    }

    /// The lease `name` that `pid` holds, for Tenure's own LVB commands:
    /// a process reads and writes only the blocks of its own leases.
    func heldLease(_ name: String, of pid: Int32) throws -> HeldLease {
        guard let lease = core.leases[ProcessID(pid)]?[name] else {
            throw TenureError(.notOwner, "Process \(pid) does not hold \(name).", remedy: "`tenure client inquire -p \(pid)` lists what it holds.")
        }
        return lease
    }

    /// The LVB of a lease held here: not held (sanlock: ENOENT), acquired
    /// without an LVB (EINVAL).
    private func lvbKey(lockspace: LeaseName, name: LeaseName) throws -> String {
        guard let lease = heldLease(lockspace: lockspace, name: name) else {
            throw TenureError(.notOwner, "\(lockspace):\(name) is not held on this host.", remedy: "Acquire it first.")
        }
        let key = Self.lvbKey(lease.resource)
        guard lvbs[key] != nil else {
            throw TenureError(.invalidArgument, "\(name) was acquired without a lock value block.", remedy: "Acquire it with --lvb (TENURE_ACQUIRE_LVB, SANLK_ACQUIRE_LVB).")
        }
        return key
    }

    /// set_lvb: the block's first bytes replaced; at most a sector (E2BIG past it).
    func setLVB(lockspace: LeaseName, name: LeaseName, bytes: [UInt8]) throws {
        let key = try lvbKey(lockspace: lockspace, name: name)
        guard bytes.count <= lvbs[key]!.bytes.count else {
            throw TenureError(.limitReached, "The block is \(bytes.count) bytes, longer than the lease's sector (\(lvbs[key]!.bytes.count)).",
                              remedy: "Write at most one sector.")
        }
        lvbs[key]!.bytes.replaceSubrange(0..<bytes.count, with: bytes)
        lvbs[key]!.changed = true
    }

    /// get_lvb: the block (its first `length` bytes, or all of it for 0).
    func getLVB(lockspace: LeaseName, name: LeaseName, length: Int) throws -> [UInt8] {
        let bytes = lvbs[try lvbKey(lockspace: lockspace, name: name)]!.bytes
        return length == 0 ? bytes : Array(bytes.prefix(length))
    }

    /// Before a release is written: writes the LVB if it changed, and waits
    /// until no write of it may still land — a late LVB write landing after
    /// the next holder wrote its own would hand that holder's successors a
    /// stale block. Retries through the same handle (a retry lands after
    /// the write it repeats). Throws when the lockspace is lost meanwhile:
    /// the release is then not written, and the lease ages out with it.
    func writeLVBBeforeRelease(_ lease: HeldLease) async throws {
        let key = Self.lvbKey(lease.resource)
        // Another local holder (a sharer) keeps the block.
        let others = core.leases.values.lazy.flatMap(\.values).contains { $0.resource.name == lease.resource.name && $0.resource.lockspace == lease.resource.lockspace }
        guard !others else { return }
        defer { lvbs[key] = nil }
        guard let lvb = lvbs[key], lvb.changed else { return }
        try await withDevice(lease.resource.disks[0].path) { device in
            var failed = false
            while true {
                try core.requireValid(lease.resource.lockspace, at: context.clock.now())
                do {
                    try await device.write(lvb.bytes, at: Self.lvbOffset(lease))
                    break
                } catch {
                    log.warning("writing the LVB of \(lease) failed, retrying: \(error)")
                    failed = true
                    try await context.clock.sleep(for: Timeouts.lvbRetry)
                }
            }
            // Only a failed attempt can still land (the handle is shared:
            // other leases' writes are not ours to wait for otherwise).
            while failed && device.writesMayStillLand {
                try core.requireValid(lease.resource.lockspace, at: context.clock.now())
                try await context.clock.sleep(for: Timeouts.lvbRetry)
            }
        }
    }

    /// Forgets the LVBs of resources no process here holds any more.
    func dropUnheldLVBs() {
        let held = Set(core.leases.values.flatMap(\.values).map { Self.lvbKey($0.resource) })
        lvbs = lvbs.filter { held.contains($0.key) }
    }
}
