/*
 * Fencing by time: a host that stops renewing its delta lease has its
 * holder killed — by the daemon, or by its watchdog reset — before another
 * host, watching its delta lease, may take the lease. For the spin model
 * checker; docs/safety.md ("The models") maps it to the code.
 *
 * Time is in ticks of N/2 (N = io_timeout): the expiry 8N is 16 ticks, the
 * watchdog fire time W is a multiple of them. Host A holds the lease and
 * renews every 2N; each renewal's write may land late (up to the fault
 * model's 5N after it started), fail, or A's storage may go away for good.
 * Host B watches A's slot: it takes the lease only once it has seen A's
 * timestamp unchanged for 8N + W on its own clock (the join / acquire rule).
 *
 * Variants that must fail: -DBUG_NO_W (B waits 8N only), -DBUG_PET_AFTER_LOSS
 * (A's daemon keeps petting after its lockspace expired and nothing kills the
 * holder).
 */
#define N2 2              /* N in ticks */
#define RENEW (2 * N2)    /* renewal interval 2N */
#define EXPIRY (8 * N2)   /* 8N: A's holders must be dead */
#ifndef WTICKS
#define WTICKS (4 * N2)   /* W */
#endif
#define LATEST (5 * N2)   /* a write lands at most 5N after it started */
#define MAXT (EXPIRY + WTICKS + 3 * RENEW)

byte now = 0;
/* host A */
byte lastStart = 0;       /* start of A's last successful renewal */
byte ts = 1;              /* A's timestamp as it is on disk */
bool writing = 0;         /* a renewal write in flight */
byte wStart; byte wValue;
bool aHolding = 1;        /* A's process holds the lease */
bool storageGone = 0;
/* host B */
byte seen = 0;            /* the timestamp B last read */
byte since = 0;           /* when B first read it (B's clock) */
bool bHolding = 0;

#ifdef BUG_NO_W
#define TAKEOVER_AFTER EXPIRY
#else
#define TAKEOVER_AFTER (EXPIRY + WTICKS)
#endif

/* A's holder must be dead by lastStart + 8N + W: the watchdog, last petted
 * before the expiry, resets A before then. Time cannot pass that point with
 * the holder alive; the reset (or the daemon's kill) happens first. */
#ifdef BUG_PET_AFTER_LOSS
#define MAY_ADVANCE (now < MAXT)
#else
#define MAY_ADVANCE (now < MAXT && !(aHolding && now + 1 >= lastStart + EXPIRY + WTICKS))
#endif

active proctype Time() {
end_time:
  do
  :: atomic { MAY_ADVANCE && !(writing && now + 1 > wStart + LATEST) -> now++ }
  od
}

active proctype HostA() {
end_a:
  do
  /* a renewal starts every 2N while the lockspace is valid */
  :: atomic { !writing && !storageGone && now >= lastStart + RENEW && now < lastStart + EXPIRY ->
              writing = 1; wStart = now; wValue = ts + 1 }
  /* its write lands (in time, or late within 5N); a renewal that completes
   * after the expiry does not revive the lockspace */
  :: atomic { writing -> ts = wValue; writing = 0;
              if :: now < lastStart + EXPIRY -> lastStart = wStart :: else -> skip fi }
  /* or it fails and never lands */
  :: atomic { writing -> writing = 0 }
  /* the storage goes away for good */
  :: atomic { !storageGone -> storageGone = 1 }
#ifndef BUG_PET_AFTER_LOSS
  /* from the expiry, the daemon kills the holder (or the watchdog resets A) */
  :: atomic { aHolding && now >= lastStart + EXPIRY -> aHolding = 0 }
#endif
  od
}

active proctype HostB() {
end_b:
  do
  /* B reads A's slot: a new timestamp restarts its watch */
  :: atomic { ts != seen -> seen = ts; since = now }
  /* unchanged for 8N + W since B first saw it: A is dead, B takes the lease */
  :: atomic { !bHolding && ts == seen && now >= since + TAKEOVER_AFTER ->
              assert(!aHolding);
              bHolding = 1 }
  od
}
