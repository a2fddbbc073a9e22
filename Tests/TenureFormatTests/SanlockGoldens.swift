import Testing
import TenureCore
import TenureFormat

/// Bytes written by the real sanlock, embedded so the tests need no I/O.
///
/// Captured once with Debian's sanlock 3.8.5 (`sanlock direct`, no daemon) on
/// scratch regular files under /var/tmp. sanlock accepted `-Z 4096 -A nM` on a
/// regular file, so no loop device was needed for the 4096-byte variants:
///
///     truncate -s 3M  leases512
///     sanlock direct init -s LS:0:leases512:0
///     sanlock direct init -r LS:R1:leases512:1048576
///     cp leases512 acq512
///     sanlock direct acquire_id -s LS:3:acq512:0                  # ~20 s
///     cp leases512 paxos512
///     sanlock direct acquire -r LS:R1:paxos512:1048576 -i 3 -g 1
///     truncate -s 24M leases4k
///     sanlock direct init -s LS4K:0:leases4k:0         -Z 4096 -A 8M
///     sanlock direct init -r LS4K:R8:leases4k:8388608  -Z 4096 -A 8M
///     truncate -s 16M res4k
///     sanlock direct init -r LS4K:R1M:res4k:0          -Z 4096 -A 1M
///     sanlock direct init -r LS4K:R2M:res4k:2097152    -Z 4096 -A 2M
///     sanlock direct init -r LS4K:R4M:res4k:4194304    -Z 4096 -A 4M
///
/// Each record is listed as its non-zero 8-byte words, (offset, hex), in file
/// order. Every other byte of the record, and the rest of its sector, was zero
/// (checked when captured). What else was observed at capture time:
/// - `init -s` wrote sectors 0...1999 of the lockspace with identical bytes and
///   zeros after them to the end of the 1M area.
/// - `init -r` wrote the leader (sector 0), the request record (sector 1) and
///   zeros in every other sector of the area; the dblock sector of a host that
///   never took part (e.g. host 1 at sector 2) is all zero.
/// - `acquire -i 3` changed only sector 0 (leader) and sector 4 (host 3's dblock).
/// - `sanlock direct init -r ... -Z 512 -A 2M` is refused: "Invalid
///   sector_size/align_size combination (512/2097152)".
/// - strace of `init -s`: one write of the whole area with sector 0's magic
///   zero (checksum computed that way), then a 512-byte write of sector 0 with
///   the magic. `init -r` is a single write of the whole area.
enum SanlockGolden {
    // MARK: Lockspace, 512-byte sectors, 1M align

    /// `init -s LS:0:leases512:0`, sector 0 (every host sector was identical).
    static let delta512Init = sparseBytes(count: 200, [
        (0, "1020211204000300 1000000000020000"),
        (24, "0100000000000000"),
        (56, "4c53000000000000"),
        (168, "c074f1b000000a00"),
    ])

    /// After `acquire_id -s LS:3:acq512:0`: sector 2 (host 3's delta lease).
    static let delta512AcquiredHost3 = sparseBytes(count: 200, [
        (0, "1020211204000300 1000000000020000"),
        (24, "0100000000000000 0300000000000000 0100000000000000"),
        (56, "4c53000000000000"),
        (104, "3039633334656538 2d306239382d3466 32632d386435342d 3464613965363730 626635302e766d00"),
        (152, "090c000000000000"),
        (168, "9e7ad69000000a00"),
    ])

    // MARK: Resource, 512-byte sectors, 1M align

    /// `init -r LS:R1:leases512:1048576`, sector 0 of the area.
    static let paxos512Init = sparseBytes(count: 200, [
        (0, "1020150604000600 1000000000020000 d007000000000000 d007000000000000"),
        (56, "4c53000000000000"),
        (104, "5231000000000000"),
        (168, "73a7732000000000"),
    ])

    /// `init -r`, sector 1 of the area: the request record (first 24 bytes).
    static let request512Init = sparseBytes(count: 24, [
        (0, "1120290801000100"),
    ])

    /// After `direct acquire -r LS:R1:paxos512:1048576 -i 3 -g 1`: sector 0.
    static let paxos512Acquired = sparseBytes(count: 200, [
        (0, "1020150604000600 1000000000020000 d007000000000000 d007000000000000"
            + " 0300000000000000 0100000000000000 0100000000000000 4c53000000000000"),
        (104, "5231000000000000"),
        (152, "2a0c000000000000"),
        (168, "489b4af700000000 0300000000000000 0100000000000000 2a0c000000000000"),
    ])

    /// After the same acquire: sector 4 (host 3's dblock, sector h + 1), first 56 bytes.
    static let dblock512AcquiredHost3 = sparseBytes(count: 56, [
        (0, "0300000000000000 0300000000000000 0300000000000000 0100000000000000"
            + " 2a0c000000000000 0100000000000000 8c9adcd400000000"),
    ])

    // MARK: 4096-byte sectors

    /// `init -s LS4K:0:leases4k:0 -Z 4096 -A 8M`, sector 0.
    static let delta4KInit = sparseBytes(count: 200, [
        (0, "1020211204000300 8000000000100000"),
        (24, "0100000000000000"),
        (56, "4c53344b00000000"),
        (168, "ef51ee3800000a00"),
    ])

    /// `init -r LS4K:R8:leases4k:8388608 -Z 4096 -A 8M`, sector 0.
    static let paxos4K8MInit = sparseBytes(count: 200, [
        (0, "1020150604000600 8000000000100000 d007000000000000 d007000000000000"),
        (56, "4c53344b00000000"),
        (104, "5238000000000000"),
        (168, "f5e90e1c00000000"),
    ])

    /// The same area, sector 1 (request record), first 24 bytes.
    static let request4KInit = sparseBytes(count: 24, [
        (0, "1120290801000100"),
    ])

    /// `init -r LS4K:R1M:res4k:0 -Z 4096 -A 1M`, sector 0.
    static let paxos4K1MInit = sparseBytes(count: 200, [
        (0, "1020150604000600 1000000000100000 fa00000000000000 fa00000000000000"),
        (56, "4c53344b00000000"),
        (104, "52314d0000000000"),
        (168, "85f6750d00000000"),
    ])

    /// `init -r LS4K:R2M:res4k:2097152 -Z 4096 -A 2M`, sector 0.
    static let paxos4K2MInit = sparseBytes(count: 200, [
        (0, "1020150604000600 2000000000100000 f401000000000000 f401000000000000"),
        (56, "4c53344b00000000"),
        (104, "52324d0000000000"),
        (168, "5c0814c600000000"),
    ])

    /// `init -r LS4K:R4M:res4k:4194304 -Z 4096 -A 4M`, sector 0.
    static let paxos4K4MInit = sparseBytes(count: 200, [
        (0, "1020150604000600 4000000000100000 e803000000000000 e803000000000000"),
        (56, "4c53344b00000000"),
        (104, "52344d0000000000"),
        (168, "1f833b5500000000"),
    ])
}

/// What `sanlock direct read_leader` printed for a golden record. For
/// lockspace records it prints write_id / write_generation / write_timestamp
/// as extra1 / extra2 / extra3.
struct PrintedLeader: Sendable {
    var magic: UInt32
    var version: UInt32
    var flags: UInt32
    var sectorSize: UInt32
    var numHosts: UInt64
    var maxHosts: UInt64
    var ownerID: UInt64
    var ownerGeneration: UInt64
    var lver: UInt64
    var spaceName: String
    var resourceName: String
    var timestamp: UInt64
    var checksum: UInt32
    var ioTimeout: UInt16
    var writeID: UInt64 = 0
    var writeGeneration: UInt64 = 0
    var writeTimestamp: UInt64 = 0
}

/// A golden leader record with what sanlock said about it.
struct GoldenLeader: Sendable, CustomStringConvertible, CustomTestStringConvertible {
    var label: String
    var bytes: [UInt8]
    var kind: LeaseKind
    var sectorSize: SectorSize
    var alignment: Alignment
    var printed: PrintedLeader
    var description: String { label }
    var testDescription: String { label }

    static let all: [GoldenLeader] = [
        GoldenLeader(
            label: "lockspace 512/1M after init", bytes: SanlockGolden.delta512Init, kind: .delta,
            sectorSize: .bytes512, alignment: .oneMiB,
            printed: PrintedLeader(
                magic: 0x1221_2010, version: 0x30004, flags: 0x10, sectorSize: 512, numHosts: 0, maxHosts: 1,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS", resourceName: "", timestamp: 0,
                checksum: 0xb0f1_74c0, ioTimeout: 10)),
        GoldenLeader(
            label: "lockspace 512/1M host 3 after acquire_id", bytes: SanlockGolden.delta512AcquiredHost3, kind: .delta,
            sectorSize: .bytes512, alignment: .oneMiB,
            printed: PrintedLeader(
                magic: 0x1221_2010, version: 0x30004, flags: 0x10, sectorSize: 512, numHosts: 0, maxHosts: 1,
                ownerID: 3, ownerGeneration: 1, lver: 0, spaceName: "LS",
                resourceName: "09c34ee8-0b98-4f2c-8d54-4da9e670bf50.vm", timestamp: 3081,
                checksum: 0x90d6_7a9e, ioTimeout: 10)),
        GoldenLeader(
            label: "resource 512/1M after init", bytes: SanlockGolden.paxos512Init, kind: .paxos,
            sectorSize: .bytes512, alignment: .oneMiB,
            printed: PrintedLeader(
                magic: 0x0615_2010, version: 0x60004, flags: 0x10, sectorSize: 512, numHosts: 2000, maxHosts: 2000,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS", resourceName: "R1", timestamp: 0,
                checksum: 0x2073_a773, ioTimeout: 0)),
        GoldenLeader(
            label: "resource 512/1M after acquire by host 3", bytes: SanlockGolden.paxos512Acquired, kind: .paxos,
            sectorSize: .bytes512, alignment: .oneMiB,
            printed: PrintedLeader(
                magic: 0x0615_2010, version: 0x60004, flags: 0x10, sectorSize: 512, numHosts: 2000, maxHosts: 2000,
                ownerID: 3, ownerGeneration: 1, lver: 1, spaceName: "LS", resourceName: "R1", timestamp: 3114,
                checksum: 0xf74a_9b48, ioTimeout: 0, writeID: 3, writeGeneration: 1, writeTimestamp: 3114)),
        GoldenLeader(
            label: "lockspace 4096/8M after init", bytes: SanlockGolden.delta4KInit, kind: .delta,
            sectorSize: .bytes4096, alignment: .eightMiB,
            printed: PrintedLeader(
                magic: 0x1221_2010, version: 0x30004, flags: 0x80, sectorSize: 4096, numHosts: 0, maxHosts: 1,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS4K", resourceName: "", timestamp: 0,
                checksum: 0x38ee_51ef, ioTimeout: 10)),
        GoldenLeader(
            label: "resource 4096/8M after init", bytes: SanlockGolden.paxos4K8MInit, kind: .paxos,
            sectorSize: .bytes4096, alignment: .eightMiB,
            printed: PrintedLeader(
                magic: 0x0615_2010, version: 0x60004, flags: 0x80, sectorSize: 4096, numHosts: 2000, maxHosts: 2000,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS4K", resourceName: "R8", timestamp: 0,
                checksum: 0x1c0e_e9f5, ioTimeout: 0)),
        GoldenLeader(
            label: "resource 4096/1M after init", bytes: SanlockGolden.paxos4K1MInit, kind: .paxos,
            sectorSize: .bytes4096, alignment: .oneMiB,
            printed: PrintedLeader(
                magic: 0x0615_2010, version: 0x60004, flags: 0x10, sectorSize: 4096, numHosts: 250, maxHosts: 250,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS4K", resourceName: "R1M", timestamp: 0,
                checksum: 0x0d75_f685, ioTimeout: 0)),
        GoldenLeader(
            label: "resource 4096/2M after init", bytes: SanlockGolden.paxos4K2MInit, kind: .paxos,
            sectorSize: .bytes4096, alignment: .twoMiB,
            printed: PrintedLeader(
                magic: 0x0615_2010, version: 0x60004, flags: 0x20, sectorSize: 4096, numHosts: 500, maxHosts: 500,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS4K", resourceName: "R2M", timestamp: 0,
                checksum: 0xc614_085c, ioTimeout: 0)),
        GoldenLeader(
            label: "resource 4096/4M after init", bytes: SanlockGolden.paxos4K4MInit, kind: .paxos,
            sectorSize: .bytes4096, alignment: .fourMiB,
            printed: PrintedLeader(
                magic: 0x0615_2010, version: 0x60004, flags: 0x40, sectorSize: 4096, numHosts: 1000, maxHosts: 1000,
                ownerID: 0, ownerGeneration: 0, lver: 0, spaceName: "LS4K", resourceName: "R4M", timestamp: 0,
                checksum: 0x553b_831f, ioTimeout: 0)),
    ]
}
