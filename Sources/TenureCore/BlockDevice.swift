/// The storage seam: everything the engine and the tools know of a device.
///
/// Implementations: `DirectDevice` (O_DIRECT with libaio and a deadline per
/// I/O) and `SyncDirectDevice` (O_DIRECT with pread/pwrite) in TenureIO;
/// `MemoryDevice` (with a fault model) in TenureTestKit.
///
/// Contract, for every implementation:
/// - offsets and lengths are multiples of ``sectorSize``; anything else is
///   refused with `.misaligned` before any I/O is issued;
/// - an I/O that would reach past ``sizeBytes`` is refused with `.outOfBounds`;
/// - a read returns exactly `length` bytes or throws; a write writes all of
///   its bytes or throws (a short transfer is `.shortIO`);
/// - an I/O that has not completed within the device's deadline throws
///   `.ioTimeout`; whatever the device does with it afterwards, the caller's
///   data is not touched again and the caller may retry at once;
/// - writes through one handle to overlapping sectors land in the order they
///   were issued: a write waits (within its own deadline) for an earlier one
///   that may still land, such as one that timed out. Disk Paxos relies on a
///   host's own blocks only moving forward.
public protocol BlockDevice: AnyObject, Sendable {
    /// The path it was opened from, for messages.
    var path: String { get }
    /// Logical sector size: 512 for regular files, BLKSSZGET for block devices.
    var sectorSize: SectorSize { get }
    /// Size in bytes: BLKGETSIZE64 for block devices, st_size for files.
    var sizeBytes: UInt64 { get }

    /// Reads `length` bytes at `offset`.
    func read(at offset: UInt64, length: Int) async throws -> [UInt8]
    /// Writes `bytes` at `offset`, durably (the device is opened O_SYNC).
    func write(_ bytes: [UInt8], at offset: UInt64) async throws
    /// Stops accepting I/O; in-flight I/O is reaped before buffers are freed.
    func close() async

    /// Whether a write issued through this handle may still land: one whose
    /// caller still waits, or one whose caller was answered (it timed out)
    /// that the device has not seen finish. Stays true after ``close()`` for
    /// writes a close gave up on. A host asks every handle it wrote through
    /// before it frees its host id (``Lockspace/leave(afterWritesThrough:)``):
    /// a write of its landing after another machine took that id would land
    /// on the other machine's blocks, and nothing orders the two.
    var writesMayStillLand: Bool { get }
}

extension BlockDevice {
    /// Checks the contract's alignment and bounds rules; implementations call
    /// this before issuing any I/O.
    public func validate(offset: UInt64, length: Int) throws {
        let sector = UInt64(sectorSize.bytes)
        guard length > 0, offset % sector == 0, UInt64(length) % sector == 0 else {
            throw TenureError(
                .misaligned,
                "I/O of \(length) bytes at offset \(offset) on \(path) is not aligned to its \(sectorSize)-byte sectors.",
                remedy: "Offsets and lengths must be multiples of the sector size.")
        }
        guard offset <= sizeBytes, UInt64(length) <= sizeBytes - offset else {
            throw TenureError(
                .outOfBounds,
                "I/O of \(length) bytes at offset \(offset) reaches past the end of \(path) (\(sizeBytes) bytes).",
                remedy: "Use an offset inside the device, or grow the file or volume.")
        }
    }
}
