#ifndef TENURE_PROTO_H
#define TENURE_PROTO_H
/*
 * The Tenure client protocol, declared once: the Swift daemon, the Swift
 * client and libtenure (C) all include this header, so they cannot drift
 * apart. docs/protocol.md describes it in prose.
 *
 * A message is a 16-byte header followed by `length` payload bytes. All
 * integers are little-endian. The payload is a sequence of fields, each a
 * u16 length and that many bytes (text is UTF-8, not NUL-terminated;
 * integers are written as decimal text). A reply echoes the request's
 * command with TENURE_REPLY set and its seq, and its payload starts with
 * one field holding the result code (decimal), then the command's fields.
 */
#include <stdint.h>

#define TENURE_MAGIC 0x544E5231u          /* "TNR1" read as a little-endian u32 */
#define TENURE_PROTO_VERSION 1
#define TENURE_HEADER_BYTES 16
/* The largest payload either side sends or accepts. */
#define TENURE_MAX_PAYLOAD_BYTES 65536
/* The most fields one message carries. */
#define TENURE_MAX_FIELDS 64
/* The most resources one acquire names (sanlock's limit too). */
#define TENURE_MAX_RESOURCES_PER_REQUEST 8
/* The socket's file name inside the run dir. */
#define TENURE_SOCKET_NAME "tenure.sock"
#define TENURE_DEFAULT_RUN_DIR "/run/tenure"
#define TENURE_RUN_DIR_ENV "TENURE_RUN_DIR"

struct tenure_header {
    uint32_t magic;
    uint16_t version;
    uint16_t command;   /* TENURE_CMD_*, | TENURE_REPLY in replies */
    uint32_t length;    /* payload bytes */
    uint32_t seq;       /* chosen by the client, echoed in the reply */
};

#define TENURE_REPLY 0x8000u

/* Commands. Fields after the command name; "pid" 0 means the caller. */
enum tenure_command {
    TENURE_CMD_REGISTER = 1,        /* -> (result). The connection is the registration. */
    TENURE_CMD_ADD_LOCKSPACE = 2,   /* lockspace "NAME:HOST_ID:PATH:OFFSET", host name, io_timeout s -> generation */
    TENURE_CMD_REM_LOCKSPACE = 3,   /* lockspace name -> (result) */
    TENURE_CMD_ACQUIRE = 4,         /* pid, flags, resource... -> state string of each, "LS:NAME:PATH:OFF:LVER" */
    TENURE_CMD_RELEASE = 5,         /* pid, resource name or "*"... -> (result) */
    TENURE_CMD_INQUIRE = 6,         /* pid -> state string (resources joined by spaces) */
    TENURE_CMD_STATUS = 7,          /* -> JSON text of lockspaces, hosts and leases */
    TENURE_CMD_REQUEST = 8,         /* resource "LS:NAME:PATH:OFF[:LVER]", force mode (1 force, 2 graceful) -> (result) */
    TENURE_CMD_SHUTDOWN = 9,        /* force (0/1) -> (result) */
    TENURE_CMD_KILLPATH = 10,       /* program, args... -> (result). Run instead of SIGTERM for the caller's leases. */
    TENURE_CMD_RESTRICT = 11,       /* flags (TENURE_RESTRICT_*) -> (result). Applies to this connection and its pid. */
    TENURE_CMD_CONVERT = 12,        /* pid, resource name, mode ("shared" or "exclusive") -> state string */
    TENURE_CMD_HOST_STATUS = 13,    /* lockspace name -> JSON: every host slot in use and its state as seen here */
    TENURE_CMD_RENEWAL = 14,        /* lockspace name -> a line per recent renewal: timestamp, read and write ms, failures after */
    TENURE_CMD_LOG_DUMP = 15,       /* -> the daemon's recent log, debug lines included */
    TENURE_CMD_SET_LVB = 16,        /* pid, resource name, block as hex (at most a sector) -> (result). Written before the release. */
    TENURE_CMD_GET_LVB = 17,        /* pid, resource name -> the block as hex (the lease was acquired with TENURE_ACQUIRE_LVB) */
    TENURE_CMD_RELEASE_ORPHANS = 18, /* lockspace name, resource name or "*"... -> (result). Administrators only. */
    TENURE_CMD_SET_EVENT = 19,      /* lockspace name, host id or "all", event, data -> (result). Administrators only. */
    TENURE_CMD_METRICS = 20,        /* -> Prometheus text exposition of the daemon's metrics */
    TENURE_CMD_INDEX = 21,          /* "lookup", "create" or "delete"; index "LOCKSPACE:PATH:OFFSET"; resource name; resource offset -> name, offset */
};

/* Restrict flags. */
#define TENURE_RESTRICT_ALL 0x1u      /* this connection may make no further requests */
#define TENURE_RESTRICT_SIGKILL 0x2u  /* fence this pid with SIGKILL only (no SIGTERM, no killpath) */
#define TENURE_RESTRICT_SIGTERM 0x4u  /* fence this pid with SIGTERM or the killpath only (never SIGKILL) */

/* The environment variable a killpath program finds the holder's pid in. */
#define TENURE_KILL_PID_ENV "TENURE_KILL_PID"

/* Acquire flags (decimal text in the flags field). */
#define TENURE_ACQUIRE_SHARED 0x1u
#define TENURE_ACQUIRE_LVB 0x2u          /* read the lease's lock value block (get/set with TENURE_CMD_*_LVB) */
#define TENURE_ACQUIRE_PERSISTENT 0x4u   /* kept by the host as an orphan when the process goes */
#define TENURE_ACQUIRE_ORPHAN 0x8u       /* adopt the orphan of the resource if there is one */
#define TENURE_ACQUIRE_ORPHAN_ONLY 0x10u /* adopt the orphan, or fail */
#define TENURE_ACQUIRE_ALL_FLAGS 0x1Fu

/*
 * Result codes, grouped by kind; never a raw -errno.
 *   0        success
 *   100-199  the request itself is wrong
 *   200-299  the lease or lockspace state does not allow it
 *   300-399  the storage failed
 *   400-499  the daemon cannot serve it now
 */
enum tenure_result {
    TENURE_OK = 0,
    TENURE_E_BAD_MESSAGE = 100,      /* malformed, truncated or of another version */
    TENURE_E_UNKNOWN_COMMAND = 101,
    TENURE_E_TOO_LARGE = 102,
    TENURE_E_BAD_ARGUMENT = 103,
    TENURE_E_NOT_REGISTERED = 104,
    TENURE_E_PERMISSION = 105,       /* acting for another pid needs root or the admin group */
    TENURE_E_HELD = 200,             /* held by a live host */
    TENURE_E_IN_USE = 201,           /* shared holders remain, or the host id is busy */
    TENURE_E_LVER_MISMATCH = 202,
    TENURE_E_NOT_OWNER = 203,
    TENURE_E_NO_LOCKSPACE = 204,     /* the lockspace is not joined on this host */
    TENURE_E_LOCKSPACE_LOST = 205,
    TENURE_E_EXISTS = 206,           /* the lockspace is joined already */
    TENURE_E_IO = 300,
    TENURE_E_IO_TIMEOUT = 301,
    TENURE_E_BAD_RECORD = 302,       /* what is on disk is not a valid lease */
    TENURE_E_SHUTTING_DOWN = 400,
    TENURE_E_LIMIT = 401,            /* a limit of the daemon was reached */
};

#endif
