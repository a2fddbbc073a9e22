/// sanlock's checksum: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)
/// with the register started at 0xFFFFFFFE and no final XOR.
///
/// That start value and the missing final XOR make the result differ from
/// the standard CRC-32C of the same bytes; sanlock has always computed it
/// this way, so every compatible implementation must too.
public enum LeaseChecksum {
    /// The register's start value.
    public static let seed: UInt32 = 0xFFFF_FFFE
    /// Reflected Castagnoli polynomial.
    public static let polynomial: UInt32 = 0x82F6_3B78

    private static let table: [UInt32] = (0..<256).map { byte in
        var crc = UInt32(byte)
        for _ in 0..<8 {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1
        }
        return crc
    }

    /// The checksum of `bytes`.
    public static func compute<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc = seed
        table.withUnsafeBufferPointer { t in
            for b in bytes {
                crc = t[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8)
            }
        }
        return crc
    }
}
