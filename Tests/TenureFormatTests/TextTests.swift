import Testing
import TenureCore

// The text helpers that replace Foundation's in the daemon and the CLI:
// what they write must be what printf and a JSON reader expect.

@Suite("Text without Foundation")
struct TextTests {
    @Test func fixedPointRoundsAsPrintfDoes() {
        #expect(Format.fixed(1.2345, 3) == "1.235")
        #expect(Format.fixed(0.5, 0) == "1")
        #expect(Format.fixed(2, 1) == "2.0")
        #expect(Format.fixed(-0.04, 1) == "0.0", "a negative that rounds to zero has no sign")
        #expect(Format.fixed(-12.25, 1) == "-12.3")
        #expect(Format.fixed(0.001, 3) == "0.001")
        #expect(Format.fixed(1234567.891, 2) == "1234567.89")
        #expect(Format.fixed(.infinity, 2) == "inf")
    }

    @Test func paddingAlignsAndNeverTruncates() {
        #expect(Format.padded("7", 3) == "  7")
        #expect(Format.padded("ff", 8, with: "0") == "000000ff")
        #expect(Format.padded("toolong", 3) == "toolong")
        #expect(Format.leftAligned("ab", 4) == "ab  ")
        #expect("  a b \t\n".trimmed == "a b")
        #expect(" \n".trimmed == "")
    }

    @Test func jsonIsWrittenWithSortedKeysAndEscapes() {
        let text = JSON.text(["b": 1, "a": ["x", true, 2.5] as [Any], "q": "say \"hi\"\n\\\u{01}"] as [String: Any])
        #expect(text == #"{"a":["x",true,2.5],"b":1,"q":"say \"hi\"\n\\\u0001"}"#)
        #expect(JSON.text([] as [Any]) == "[]")
        #expect(JSON.text([String: Any]()) == "{}")
        let missing: Int? = nil, present: Int? = 4
        #expect(JSON.text(["m": missing as Any, "p": present as Any, "n": JSON.null] as [String: Any]) == #"{"m":null,"n":null,"p":4}"#)
    }

    @Test func jsonReadsWhatItWritesAndWhatOthersWrite() throws {
        let object: [String: Any] = ["name": "LS", "ids": [1, 2, 3], "valid": false, "ratio": 0.25, "nested": ["é": "ü"], "none": JSON.null]
        let read = try #require(try JSON.value(JSON.text(object)) as? [String: Any])
        #expect(read["name"] as? String == "LS")
        #expect(read["ids"] as? [Int] == [1, 2, 3])
        #expect(read["valid"] as? Bool == false)
        #expect(read["ratio"] as? Double == 0.25)
        #expect((read["nested"] as? [String: Any])?["é"] as? String == "ü")
        #expect(read["none"] as? JSON.Null == JSON.null)
        // Another writer's spacing, escapes and exponents.
        let other = try #require(try JSON.value(" { \"a\" : [ 1e3 , -2 , \"\\u00e9\\t\" ] } ") as? [String: Any])
        let array = try #require(other["a"] as? [Any])
        #expect(JSON.double(array[0]) == 1000 && array[1] as? Int == -2 && array[2] as? String == "é\t")
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"open", "1 2", "{1: 2}"])
    func malformedJsonIsRefusedWithWhere(_ text: String) {
        #expect(throws: TenureError.self) { _ = try JSON.value(text) }
    }

    @Test func nestingDeeperThanTheLimitIsRefused() {
        let deep = String(repeating: "[", count: JSON.maxDepth + 1) + String(repeating: "]", count: JSON.maxDepth + 1)
        #expect(throws: TenureError.self) { _ = try JSON.value(deep) }
        let fine = String(repeating: "[", count: JSON.maxDepth - 1) + String(repeating: "]", count: JSON.maxDepth - 1)
        #expect((try? JSON.value(fine)) != nil)
    }
}
