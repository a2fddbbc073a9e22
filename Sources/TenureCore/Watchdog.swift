/// The seam for the host's watchdog: a timer that resets the host unless
/// petted within its fire time. The host core decides when to pet
/// (`HostDirective.pet`); an implementation only does it — `/dev/watchdog`
/// in the daemon (TenureIO's `WatchdogDevice`), a timer that resets the
/// simulated machine in the simulator (TenureTestKit's `ManualWatchdog`).
public protocol Watchdog: AnyObject, Sendable {
    /// W: the reset comes this long after the last pet.
    var fireTime: Duration { get }
    /// Starts the fire time again. Throws when the device refused: the
    /// caller logs and counts it, and the host may be reset.
    func pet() throws(TenureError)
    /// A clean stop: the watchdog is disarmed and closed.
    func closeCleanly()
}
