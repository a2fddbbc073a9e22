/// Little-endian field access on a byte buffer. Every on-disk structure is
/// encoded field by field through these, never by memory layout.
package struct ByteWriter {
    package var bytes: [UInt8]

    package init(count: Int) { bytes = [UInt8](repeating: 0, count: count) }
    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package mutating func put(_ value: UInt16, at offset: Int) { putLE(UInt64(value), width: 2, at: offset) }
    package mutating func put(_ value: UInt32, at offset: Int) { putLE(UInt64(value), width: 4, at: offset) }
    package mutating func put(_ value: UInt64, at offset: Int) { putLE(value, width: 8, at: offset) }

    /// Writes `name` NUL-padded into a fixed field of `width` bytes.
    package mutating func put(_ name: LeaseName, at offset: Int, width: Int = LeaseName.maxBytes) {
        let utf8 = name.utf8
        for i in 0..<width { bytes[offset + i] = i < utf8.count ? utf8[i] : 0 }
    }

    private mutating func putLE(_ value: UInt64, width: Int, at offset: Int) {
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
}

package struct ByteReader {
    package let bytes: ArraySlice<UInt8>

    /// `bytes` may be a slice; offsets are relative to its start.
    package init<C: Collection>(_ bytes: C) where C.Element == UInt8 { self.bytes = ArraySlice(bytes) }

    package func u16(at offset: Int) -> UInt16 { UInt16(truncatingIfNeeded: le(width: 2, at: offset)) }
    package func u32(at offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: le(width: 4, at: offset)) }
    package func u64(at offset: Int) -> UInt64 { le(width: 8, at: offset) }

    /// The bytes of a fixed NUL-padded name field up to the first NUL.
    package func nameBytes(at offset: Int, width: Int = LeaseName.maxBytes) -> [UInt8] {
        let start = bytes.startIndex + offset
        let field = bytes[start..<(start + width)]
        return Array(field.prefix { $0 != 0 })
    }

    package func slice(at offset: Int, count: Int) -> ArraySlice<UInt8> {
        let start = bytes.startIndex + offset
        return bytes[start..<(start + count)]
    }

    private func le(width: Int, at offset: Int) -> UInt64 {
        let start = bytes.startIndex + offset
        var v: UInt64 = 0
        for i in 0..<width { v |= UInt64(bytes[start + i]) << (8 * UInt64(i)) }
        return v
    }
}
