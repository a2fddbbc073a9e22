import CTenureProto
import Testing
import TenureCore
@testable import TenureClient

/// The Swift side of the client protocol against the one C header that
/// libtenure and the libvirt plugin compile against.
@Suite struct WireTests {
    /// Every command, beside the header's number for it. A command added on
    /// one side only fails here (the count, or its number).
    static let commands: [(Command, UInt32)] = [
        (.register, TENURE_CMD_REGISTER.rawValue), (.addLockspace, TENURE_CMD_ADD_LOCKSPACE.rawValue),
        (.remLockspace, TENURE_CMD_REM_LOCKSPACE.rawValue), (.acquire, TENURE_CMD_ACQUIRE.rawValue),
        (.release, TENURE_CMD_RELEASE.rawValue), (.inquire, TENURE_CMD_INQUIRE.rawValue),
        (.status, TENURE_CMD_STATUS.rawValue), (.request, TENURE_CMD_REQUEST.rawValue),
        (.shutdown, TENURE_CMD_SHUTDOWN.rawValue), (.killpath, TENURE_CMD_KILLPATH.rawValue),
        (.restrict, TENURE_CMD_RESTRICT.rawValue), (.convert, TENURE_CMD_CONVERT.rawValue),
        (.hostStatus, TENURE_CMD_HOST_STATUS.rawValue), (.renewal, TENURE_CMD_RENEWAL.rawValue),
        (.logDump, TENURE_CMD_LOG_DUMP.rawValue), (.setLVB, TENURE_CMD_SET_LVB.rawValue),
        (.getLVB, TENURE_CMD_GET_LVB.rawValue), (.releaseOrphans, TENURE_CMD_RELEASE_ORPHANS.rawValue),
        (.setEvent, TENURE_CMD_SET_EVENT.rawValue), (.metrics, TENURE_CMD_METRICS.rawValue),
        (.index, TENURE_CMD_INDEX.rawValue),
    ]

    static let results: [(ResultCode, UInt32)] = [
        (.ok, TENURE_OK.rawValue), (.badMessage, TENURE_E_BAD_MESSAGE.rawValue),
        (.unknownCommand, TENURE_E_UNKNOWN_COMMAND.rawValue), (.tooLarge, TENURE_E_TOO_LARGE.rawValue),
        (.badArgument, TENURE_E_BAD_ARGUMENT.rawValue), (.notRegistered, TENURE_E_NOT_REGISTERED.rawValue),
        (.permission, TENURE_E_PERMISSION.rawValue), (.held, TENURE_E_HELD.rawValue), (.inUse, TENURE_E_IN_USE.rawValue),
        (.lverMismatch, TENURE_E_LVER_MISMATCH.rawValue), (.notOwner, TENURE_E_NOT_OWNER.rawValue),
        (.noLockspace, TENURE_E_NO_LOCKSPACE.rawValue), (.lockspaceLost, TENURE_E_LOCKSPACE_LOST.rawValue),
        (.exists, TENURE_E_EXISTS.rawValue), (.io, TENURE_E_IO.rawValue), (.ioTimeout, TENURE_E_IO_TIMEOUT.rawValue),
        (.badRecord, TENURE_E_BAD_RECORD.rawValue), (.shuttingDown, TENURE_E_SHUTTING_DOWN.rawValue),
        (.limit, TENURE_E_LIMIT.rawValue),
    ]

    @Test func everyCommandHasTheHeadersNumber() {
        #expect(Self.commands.count == Command.allCases.count, "a command is missing from the header or from this table")
        for (command, number) in Self.commands { #expect(UInt32(command.rawValue) == number, "\(command)") }
        #expect(Set(Self.commands.map(\.1)).count == Self.commands.count, "two commands share a number")
    }

    @Test func everyResultCodeHasTheHeadersNumber() {
        #expect(Self.results.count == ResultCode.allCases.count, "a result code is missing from the header or from this table")
        for (code, number) in Self.results { #expect(UInt32(bitPattern: code.rawValue) == number, "\(code)") }
    }

    @Test func aMessageRoundTrips() throws {
        let sent = Message(.acquire, seq: 7, ["0", "1", "LS:R1:/var/tmp/x:1048576"])
        let bytes = try sent.encoded()
        let header = try Message.decodeHeader(Array(bytes[..<Wire.headerBytes]))
        let fields = try Message.decodeFields(Array(bytes[Wire.headerBytes...]))
        #expect(header.command == Command.acquire.rawValue)
        #expect(fields == sent.fields)
    }

    @Test func aTruncatedOrForeignHeaderIsRefused() throws {
        var bytes = try Message(.status, seq: 1, []).encoded()
        #expect(throws: TenureError.self) { try Message.decodeHeader(Array(bytes[..<(Wire.headerBytes - 1)])) }
        bytes[0] ^= 0xFF
        #expect(throws: TenureError.self) { try Message.decodeHeader(Array(bytes[..<Wire.headerBytes])) }
    }

    @Test func tooManyFieldsAreRefused() {
        let message = Message(.release, seq: 1, Array(repeating: "x", count: Wire.maxFields + 1))
        #expect(throws: TenureError.self) { try message.encoded() }
    }
}
