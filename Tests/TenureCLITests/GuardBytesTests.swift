import Foundation
import Testing
import TenureTestSupport

/// Nothing is written outside the area a command was asked to write: lease
/// areas are surrounded by guard bytes, and every byte outside them is
/// checked after each command.
@Suite("No command writes outside its lease area", .ownThreads)
struct GuardBytesTests {
    static let guardByte: UInt8 = 0xA5

    /// Every byte of `image` outside `areas` (offset, length) still holds the guard byte.
    func expectGuardsIntact(_ image: [UInt8], areas: [(Int, Int)], sourceLocation: SourceLocation = #_sourceLocation) {
        var inside = [Bool](repeating: false, count: image.count)
        for (offset, length) in areas { for i in offset..<(offset + length) { inside[i] = true } }
        let damaged = image.indices.filter { !inside[$0] && image[$0] != Self.guardByte }
        #expect(damaged.isEmpty, "\(damaged.count) guard bytes changed, first at offset \(damaged.first ?? -1)", sourceLocation: sourceLocation)
    }

    @Test(arguments: LayoutPair.all)
    func initOfOneAreaWritesOnlyThatArea(_ pair: LayoutPair) throws {
        let scratch = try Scratch()
        let a = pair.alignBytes
        let file = try scratch.file("g.img", size: 5 * a, fill: Self.guardByte)
        let layout = ["--sector-size", String(pair.sector), "--align", pair.align]
        try Harness.tenureOK(["direct", "init", "-s", "ls:0:\(file):\(a)"] + layout)
        try Harness.tenureOK(["direct", "init", "-r", "ls:r:\(file):\(3 * a)", "--max-hosts", "8"] + layout)
        let image = try contents(of: file, length: 5 * a)
        expectGuardsIntact(image, areas: [(a, a), (3 * a, a)])
        // And the areas were written: sector 0 of each starts with its magic.
        #expect(image[a..<(a + 4)].elementsEqual([0x10, 0x20, 0x21, 0x12]), "lockspace magic missing")
        #expect(image[(3 * a)..<(3 * a + 4)].elementsEqual([0x10, 0x20, 0x15, 0x06]), "resource magic missing")
    }

    @Test func formatWritesOnlyItsAreas() throws {
        let scratch = try Scratch()
        let m = 1 << 20
        let file = try scratch.file("g.img", size: 8 * m, fill: Self.guardByte)
        try Harness.tenureOK(["direct", "format", "--lockspace", "ls", "--path", file, "--offset", "2M", "--resources", "3"])
        expectGuardsIntact(try contents(of: file, length: 8 * m), areas: [(2 * m, 4 * m)])
    }

    /// The lease algorithms too: join, acquire, request and release touch
    /// only the lockspace and the resource areas.
    @Test func leaseOperationsWriteOnlyTheirAreas() throws {
        let scratch = try Scratch()
        let m = 1 << 20
        let file = try scratch.file("g.img", size: 6 * m, fill: Self.guardByte)
        try Harness.tenureOK(["direct", "init", "-s", "ls:0:\(file):1M", "--io-timeout", "1"])
        try Harness.tenureOK(["direct", "init", "-r", "ls:r:\(file):3M", "--max-hosts", "16"])
        try Harness.tenureOK(["direct", "acquire-id", "-s", "ls:5:\(file):1M", "--io-timeout", "1"])
        try Harness.tenureOK(["direct", "acquire", "-r", "ls:r:\(file):3M", "--host-id", "5", "-s", "ls:5:\(file):1M"])
        try Harness.tenureOK(["direct", "request", "-r", "ls:r:\(file):3M", "--graceful"])
        try Harness.tenureOK(["direct", "release", "-r", "ls:r:\(file):3M", "--host-id", "5", "-s", "ls:5:\(file):1M"])
        try Harness.tenureOK(["direct", "release-id", "-s", "ls:5:\(file):1M"])
        expectGuardsIntact(try contents(of: file, length: 6 * m), areas: [(m, m), (3 * m, m)])
    }

    @Test(.enabled(if: Harness.canUseLoopDevices, "needs root and losetup for loop devices"),
          arguments: [512, 4096])
    func onALoopDevice(_ sector: Int) throws {
        let scratch = try Scratch()
        let m = 1 << 20
        let loop = try LoopDevice(in: scratch, size: 6 * m, sectorSize: sector, fill: Self.guardByte)
        try Harness.tenureOK(["direct", "init", "-s", "ls:0:\(loop.device):1M", "--align", "1M"])
        try Harness.tenureOK(["direct", "init", "-r", "ls:r:\(loop.device):3M", "--align", "1M"])
        expectGuardsIntact(try contents(of: loop.device, length: 6 * m), areas: [(m, m), (3 * m, m)])
    }
}
