// Text helpers the daemon and the CLI need without Foundation (whose
// international text and formatting would link 34 MB of ICU data into a
// binary that locks its memory): trimming, fixed-point numbers, padding,
// and JSON for the status objects the daemon sends and the CLI prints.

extension StringProtocol {
    /// Without leading and trailing spaces, tabs, carriage returns and newlines.
    public var trimmed: String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isBlank($0) }), let last = lastIndex(where: { !isBlank($0) }) else { return "" }
        return String(self[first...last])
    }
}

/// Numbers as text, as printf's %.Nf, %Nd and %0Nx would write them.
public enum Format {
    /// `value` rounded to `digits` decimals ("%.3f").
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale: UInt64 = 1
        for _ in 0 ..< digits { scale *= 10 }
        let magnitude = (value.magnitude * Double(scale)).rounded()
        guard magnitude < 1.8e19 else { return "\(value)" }
        let units = UInt64(magnitude)
        let whole = units / scale, fraction = units % scale
        let sign = value < 0 && units != 0 ? "-" : ""
        guard digits > 0 else { return sign + "\(whole)" }
        return sign + "\(whole)." + padded(String(fraction), digits, with: "0")
    }

    /// `text` right-aligned in `width` ("%6d", "%08x").
    public static func padded(_ text: String, _ width: Int, with fill: Character = " ") -> String {
        text.count >= width ? text : String(repeating: fill, count: width - text.count) + text
    }

    /// `text` left-aligned in `width` ("%-6s").
    public static func leftAligned(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}

/// JSON for the status objects, metrics and `--json` outputs: values are
/// `String`, `Int`, `Double`, `Bool`, `[Any]`, `[String: Any]` (keys
/// sorted when written) and ``JSON/null``.
public enum JSON {
    /// JSON's null, read and written.
    public struct Null: Equatable, Sendable {
        public init() {}
    }
    public static let null = Null()

    /// `value` as JSON text, keys sorted.
    public static func text(_ value: Any) -> String {
        var out = ""
        write(value, to: &out)
        return out
    }

    private static func write(_ value: Any, to out: inout String) {
        switch value {
        case let string as String: writeString(string, to: &out)
        case let substring as Substring: writeString(String(substring), to: &out)
        case let bool as Bool: out += bool ? "true" : "false"
        case let int as Int: out += String(int)
        case let int as Int32: out += String(int)
        case let int as Int64: out += String(int)
        case let int as UInt64: out += String(int)
        case let int as UInt32: out += String(int)
        case let int as UInt16: out += String(int)
        case let int as UInt8: out += String(int)
        case let double as Double: out += double.isFinite ? "\(double)" : "null"
        case let object as [String: Any]:
            out += "{"
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                writeString(key, to: &out)
                out += ":"
                write(object[key]!, to: &out)
            }
            out += "}"
        case let array as [Any]:
            out += "["
            for (index, element) in array.enumerated() {
                if index > 0 { out += "," }
                write(element, to: &out)
            }
            out += "]"
        case is Null:
            out += "null"
        default:
            // An Optional inside `Any`: its value, or null.
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional, let wrapped = mirror.children.first?.value {
                write(wrapped, to: &out)
            } else {
                out += "null"
            }
        }
    }

    private static func writeString(_ string: String, to out: inout String) {
        out += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + Format.padded(String(scalar.value, radix: 16), 4, with: "0")
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Reads JSON text. Numbers without a fraction or exponent read as
    /// `Int`, others as `Double`.
    public static func value(_ text: String) throws(TenureError) -> Any {
        var reader = Reader(bytes: Array(text.utf8))
        reader.skipBlanks()
        let value = try reader.value(depth: 0)
        reader.skipBlanks()
        guard reader.at == reader.bytes.count else { throw reader.failure("text after the value") }
        return value
    }

    /// A number read as either `Int` or `Double`, as a `Double`.
    public static func double(_ value: Any?) -> Double? {
        switch value {
        case let double as Double: double
        case let int as Int: Double(int)
        default: nil
        }
    }

    /// The deepest nesting read.
    public static let maxDepth = 64

    private struct Reader {
        let bytes: [UInt8]
        var at = 0

        func failure(_ what: String) -> TenureError {
            TenureError(.protocolError, "Malformed JSON at byte \(at): \(what).")
        }

        mutating func skipBlanks() {
            while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 }
        }

        mutating func literal(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard at + w.count <= bytes.count, Array(bytes[at ..< at + w.count]) == w else { return false }
            at += w.count
            return true
        }

        mutating func value(depth: Int) throws(TenureError) -> Any {
            guard depth < JSON.maxDepth else { throw failure("nested deeper than \(JSON.maxDepth)") }
            guard at < bytes.count else { throw failure("the text ends where a value should be") }
            switch bytes[at] {
            case UInt8(ascii: "{"):
                at += 1
                var object: [String: Any] = [:]
                skipBlanks()
                if at < bytes.count, bytes[at] == UInt8(ascii: "}") { at += 1; return object }
                while true {
                    skipBlanks()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw failure("a key must be a string") }
                    let key = try string()
                    skipBlanks()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw failure("a ':' must follow a key") }
                    at += 1
                    skipBlanks()
                    object[key] = try value(depth: depth + 1)
                    skipBlanks()
                    guard at < bytes.count else { throw failure("an object is not closed") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    guard bytes[at] == UInt8(ascii: "}") else { throw failure("',' or '}' expected") }
                    at += 1
                    return object
                }
            case UInt8(ascii: "["):
                at += 1
                var array: [Any] = []
                skipBlanks()
                if at < bytes.count, bytes[at] == UInt8(ascii: "]") { at += 1; return array }
                while true {
                    skipBlanks()
                    array.append(try value(depth: depth + 1))
                    skipBlanks()
                    guard at < bytes.count else { throw failure("an array is not closed") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    guard bytes[at] == UInt8(ascii: "]") else { throw failure("',' or ']' expected") }
                    at += 1
                    return array
                }
            case UInt8(ascii: "\""):
                return try string()
            case UInt8(ascii: "t"):
                if literal("true") { return true }
            case UInt8(ascii: "f"):
                if literal("false") { return false }
            case UInt8(ascii: "n"):
                if literal("null") { return JSON.null }
            default:
                return try number()
            }
            throw failure("unknown word")
        }

        mutating func number() throws(TenureError) -> Any {
            let start = at
            var integral = true
            while at < bytes.count {
                let c = bytes[at]
                if (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
                    at += 1
                } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                    integral = false
                    at += 1
                } else {
                    break
                }
            }
            let text = String(decoding: bytes[start ..< at], as: UTF8.self)
            if integral, let int = Int(text) { return int }
            guard let double = Double(text) else { throw failure("'\(text)' is not a number") }
            return double
        }

        mutating func string() throws(TenureError) -> String {
            at += 1 // the opening quote
            var scalars = String.UnicodeScalarView()
            var run: [UInt8] = []
            func flush() {
                scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars)
                run.removeAll(keepingCapacity: true)
            }
            while at < bytes.count {
                let c = bytes[at]
                at += 1
                if c == UInt8(ascii: "\"") {
                    flush()
                    return String(scalars)
                }
                guard c == UInt8(ascii: "\\") else { run.append(c); continue }
                flush()
                guard at < bytes.count else { break }
                let escape = bytes[at]
                at += 1
                switch escape {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "u"):
                    guard at + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[at ..< at + 4], as: UTF8.self), radix: 16) else {
                        throw failure("a \\u escape needs four hex digits")
                    }
                    at += 4
                    scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default: scalars.append(Unicode.Scalar(escape))
                }
            }
            throw failure("a string is not closed")
        }
    }
}

extension String {
    /// The longest prefix of at most `n` UTF-8 bytes that ends on a character boundary.
    public func prefixBytes(_ n: Int) -> String {
        var out = ""
        for ch in self {
            if out.utf8.count + String(ch).utf8.count > n { break }
            out.append(ch)
        }
        return out
    }
}
