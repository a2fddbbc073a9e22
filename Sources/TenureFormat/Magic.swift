/// Magic numbers and versions of sanlock 3.x's on-disk structures.
/// Readers compare only the major half of a version (`version & 0xFFFF0000`).
public enum Magic {
    public static let deltaLease: UInt32 = 0x1221_2010
    public static let paxosLease: UInt32 = 0x0615_2010
    /// A paxos lease area cleared by `init` with the clear option (sanlock -z 1).
    public static let paxosCleared: UInt32 = 0x1128_2016
    public static let requestRecord: UInt32 = 0x0829_2011
    public static let resourceIndex: UInt32 = 0x0104_2018
}

public enum FormatVersion {
    public static let deltaLease: UInt32 = 0x0003_0004
    public static let paxosLease: UInt32 = 0x0006_0004
    public static let requestRecord: UInt32 = 0x0001_0001
    public static let resourceIndex: UInt32 = 0x0001_0002

    public static let majorMask: UInt32 = 0xFFFF_0000

    public static func sameMajor(_ a: UInt32, _ b: UInt32) -> Bool {
        a & majorMask == b & majorMask
    }
}
