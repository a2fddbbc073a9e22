#ifndef TENURE_H
#define TENURE_H
/*
 * libtenure: the client side of the Tenure daemon's protocol, in plain C.
 *
 * Fork-safe by construction: no threads, no global state, no allocation
 * that outlives a call, no Swift runtime. Every call takes the connection's
 * file descriptor; a process (or libvirt's forked child) may register, then
 * exec with the descriptor kept open, and the daemon keeps its leases for
 * exactly as long as that descriptor lives.
 *
 * Return values: 0 on success; a positive TENURE_E_* result code (see
 * tenure_proto.h) when the daemon refused; a negative errno when the
 * daemon could not be reached or the connection failed.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "tenure_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the daemon said about a refusal; optional in every call. */
struct tenure_error {
    int result;             /* TENURE_E_* */
    char code[48];          /* e.g. "held-by-live-host" */
    char message[512];      /* what was wrong */
    char remedy[256];       /* what to do */
};

/* Connects to RUN_DIR/tenure.sock; run_dir NULL means $TENURE_RUN_DIR, else
 * /run/tenure. Returns the descriptor, or a negative errno. */
int tenure_connect(const char *run_dir);

/* Connects and registers: the connection is the registration. */
int tenure_register(const char *run_dir);

/* Acquires nres resources ("LS:NAME:PATH:OFFSET[:LVER]") for pid (0: the
 * caller), all or nothing. On success, if state is not NULL, writes the
 * state strings joined by spaces ("LS:NAME:PATH:OFFSET:LVER ..."). */
int tenure_acquire(int fd, pid_t pid, unsigned flags, int nres, const char *const *resources,
                   char *state, size_t state_len, struct tenure_error *err);

/* Releases leases of pid by resource name; nnames 0 releases them all. */
int tenure_release(int fd, pid_t pid, int nnames, const char *const *names, struct tenure_error *err);

/* The state string of pid's leases (empty if none). */
int tenure_inquire(int fd, pid_t pid, char *state, size_t state_len, struct tenure_error *err);

/* TENURE_RESTRICT_* flags for this connection and its process. */
int tenure_restrict(int fd, unsigned flags, struct tenure_error *err);

/* A program (absolute path) the daemon runs instead of SIGTERM to stop the
 * caller; it finds the pid in $TENURE_KILL_PID. */
int tenure_killpath(int fd, const char *path, int argc, const char *const *argv, struct tenure_error *err);

/* Joins a lockspace ("NAME:HOST_ID:PATH:OFFSET"); async returns at once
 * while the daemon goes on joining. TENURE_E_EXISTS if joined already. */
int tenure_add_lockspace(int fd, const char *lockspace, int async, struct tenure_error *err);

/* Asks the holder of a resource to give it up; force kills it. */
int tenure_request(int fd, const char *resource, int force, struct tenure_error *err);

/* The lock value block of a lease pid (0: the caller) holds, acquired with
 * TENURE_ACQUIRE_LVB: set (at most a sector; written before the release),
 * and get (returns the bytes copied into lvb, at most len). */
int tenure_set_lvb(int fd, pid_t pid, const char *name, const void *lvb, size_t len, struct tenure_error *err);
int tenure_get_lvb(int fd, pid_t pid, const char *name, void *lvb, size_t len, struct tenure_error *err);

/* Releases the leases this host keeps as orphans in a lockspace (nnames 0:
 * all of them). Root only. */
int tenure_release_orphans(int fd, const char *lockspace, int nnames, const char *const *names, struct tenure_error *err);

/* Sends a host event (event from 1, data) to host_id of a lockspace, or to
 * every other host for host_id 0, through this host's delta lease. Root only. */
int tenure_set_event(int fd, const char *lockspace, uint64_t host_id, uint64_t event, uint64_t data, struct tenure_error *err);

/* A resource index ("LOCKSPACE:PATH:OFFSET", laid out by sanlock's
 * format_rindex or `sanlock direct format -x`): action "lookup" finds an
 * entry by name, by offset, or (both empty) the first free area; "create"
 * lays out a new lease named name in the first free area and lists it;
 * "delete" unlists name and clears its area. name may be NULL or "", offset
 * 0 for none. The entry found, created or deleted is copied to name_out
 * (name_len bytes) and *offset_out. create and delete need an administrator;
 * the index's lockspace must be joined. */
int tenure_index(int fd, const char *action, const char *index, const char *name, uint64_t offset,
                 char *name_out, size_t name_len, uint64_t *offset_out, struct tenure_error *err);

/* Builds "LS:NAME:PATH:OFFSET[:LVER]" with ':' and ' ' in the path escaped;
 * lver 0 leaves it out. Returns the length, or -ENAMETOOLONG if it does not fit. */
int tenure_resource_string(char *out, size_t len, const char *lockspace, const char *name,
                           const char *path, uint64_t offset, uint64_t lver);

/* A short description of a result code. */
const char *tenure_strerror(int result);

#ifdef __cplusplus
}
#endif
#endif
