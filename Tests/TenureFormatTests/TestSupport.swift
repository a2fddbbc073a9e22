import Testing
import TenureCore
import TenureFormat

// Helpers shared by the format tests. Nothing here calls into TenureFormat's
// encoders or its checksum: expected values are computed independently.

/// Parses hex digits, ignoring spaces and newlines.
func hexBytes(_ hex: String) -> [UInt8] {
    let digits = hex.filter { !$0.isWhitespace }
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

/// `count` zero bytes with each (offset, hex) run laid over them.
func sparseBytes(count: Int, _ runs: [(Int, String)]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    for (offset, hex) in runs {
        let run = hexBytes(hex)
        out.replaceSubrange(offset..<(offset + run.count), with: run)
    }
    return out
}

/// `value` as `width` little-endian bytes, written out by shifts.
func littleEndian(_ value: UInt64, width: Int) -> [UInt8] {
    (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// Reads a little-endian integer of `width` bytes at `offset`.
func readLE(_ bytes: [UInt8], at offset: Int, width: Int) -> UInt64 {
    (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
}

// MARK: - An independent CRC-32C

/// Bit-at-a-time CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) from a
/// given register start, without any final XOR. Deliberately written without a
/// table so that it shares no code or shape with `LeaseChecksum`.
func crc32cRegister(_ bytes: some Sequence<UInt8>, start: UInt32) -> UInt32 {
    var crc = start
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 {
            let lowBitSet = crc & 1 == 1
            crc >>= 1
            if lowBitSet { crc ^= 0x82F6_3B78 }
        }
    }
    return crc
}

/// Standard CRC-32C as used by iSCSI, ext4, etc.: register starts at all ones,
/// result inverted. Its published check value for "123456789" is 0xE3069283.
func standardCRC32C(_ bytes: some Sequence<UInt8>) -> UInt32 {
    crc32cRegister(bytes, start: 0xFFFF_FFFF) ^ 0xFFFF_FFFF
}

/// sanlock's rule, spelled out independently: start at ~1, no final XOR.
func sanlockRuleCRC(_ bytes: some Sequence<UInt8>) -> UInt32 {
    crc32cRegister(bytes, start: ~UInt32(1))
}

// MARK: - A seeded generator for property tests

/// SplitMix64: small, fast, and the same sequence on every platform, so a
/// failing seed can be replayed. Every property test prints its seed in the
/// failure comment.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SeededGenerator {
    /// A value that is often at an edge (0, 1, max) and otherwise anything.
    mutating func edgy64() -> UInt64 {
        switch UInt8.random(in: 0..<8, using: &self) {
        case 0: return 0
        case 1: return 1
        case 2: return .max
        case 3: return UInt64.random(in: 0...3000, using: &self)
        default: return next()
        }
    }
    mutating func edgy32() -> UInt32 { UInt32(truncatingIfNeeded: edgy64()) }
    mutating func edgy16() -> UInt16 { UInt16(truncatingIfNeeded: edgy64()) }

    /// A random name of 0...48 UTF-8 bytes, with multibyte characters mixed in.
    mutating func leaseName() throws -> LeaseName {
        let alphabet: [String] = ["a", "Z", "0", "-", ".", "_", ":", " ", "é", "ß", "字", "🙂"]
        let target = Int.random(in: 0...LeaseName.maxBytes, using: &self)
        var text = ""
        while true {
            let piece = alphabet.randomElement(using: &self)!
            if text.utf8.count + piece.utf8.count > target { break }
            text += piece
        }
        return try LeaseName(text)
    }
}

// MARK: - Errors

/// Runs `body`, requires it to throw a `TenureError` with `code`, and checks
/// that its message contains each of `message` and its remedy each of `remedy`.
@discardableResult
func expectTenureError(
    _ code: TenureError.Code,
    message fragments: [String] = [],
    remedy remedyFragments: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> TenureError? {
    do {
        try body()
        Issue.record("expected a \(code.rawValue) error, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as TenureError {
        #expect(error.code == code, "message: \(error.message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.message.contains(fragment), "message \"\(error.message)\" should mention \"\(fragment)\"",
                    sourceLocation: sourceLocation)
        }
        for fragment in remedyFragments {
            #expect(error.remedy.contains(fragment), "remedy \"\(error.remedy)\" should mention \"\(fragment)\"",
                    sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a TenureError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - Names

/// Always the checking initialiser. `LeaseName("literal")` with one string
/// literal argument is literal coercion (SE-0213): it calls
/// `init(stringLiteral:)`, which checks only the length, with a precondition.
func checkedName(_ text: String) throws -> LeaseName {
    try LeaseName(text)
}
