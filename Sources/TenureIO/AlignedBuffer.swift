import Glibc
import TenureSyscall

/// Page-aligned memory for O_DIRECT I/O, zero-filled, freed when the last
/// reference goes.
///
/// O_DIRECT needs the buffer address aligned to the logical sector size;
/// aligning to a page (``alignmentBytes``) satisfies every sector size Tenure
/// supports.
///
/// `@unchecked Sendable`: the memory is owned by exactly one I/O at a time.
/// The caller fills it before submission, the kernel owns it while the I/O is
/// in flight, and the completing side reads it after the completion is reaped;
/// these hand-offs are ordered by the device's mutex or by the synchronous
/// call, never by concurrent access.
public final class AlignedBuffer: @unchecked Sendable {
    /// The alignment of every buffer: one page.
    public static let alignmentBytes = 4096
    /// The largest buffer Tenure asks for: one 8 MiB lease area, twice over.
    public static let maxByteCount = 16 << 20

    /// The start of the memory, aligned to ``alignmentBytes``.
    public let pointer: UnsafeMutableRawPointer
    /// The size of the memory in bytes.
    public let count: Int

    /// Allocates `count` zeroed bytes, page-aligned.
    public init(count: Int) {
        precondition(count > 0 && count <= Self.maxByteCount,
                     "AlignedBuffer of \(count) bytes: must be 1...\(Self.maxByteCount).")
        var memory: UnsafeMutableRawPointer?
        let rc = posix_memalign(&memory, Self.alignmentBytes, count)
        guard rc == 0, let memory else {
            // Allocation failure of at most 16 MiB: the process cannot go on safely.
            fatalError("posix_memalign of \(count) bytes failed: \(Errno(rawValue: rc)).")
        }
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        self.pointer = memory
        self.count = count
    }

    /// Allocates a buffer holding a copy of `bytes`.
    public convenience init(copying bytes: [UInt8]) {
        self.init(count: bytes.count)
        bytes.withUnsafeBytes { source in
            pointer.copyMemory(from: source.baseAddress!, byteCount: source.count)
        }
    }

    /// A copy of the first `length` bytes.
    public func bytes(count length: Int) -> [UInt8] {
        precondition(length >= 0 && length <= count)
        return [UInt8](UnsafeRawBufferPointer(start: pointer, count: length))
    }

    /// A copy of the whole buffer.
    public var bytes: [UInt8] { bytes(count: count) }

    deinit {
        free(pointer)
    }
}
