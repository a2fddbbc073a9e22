/*
 * tenure-writer: the rig's workload (Tools/vm-cluster). It registers with
 * the daemon, acquires one resource lease for itself (retrying while
 * another host holds it), then writes a record every 100 ms into its own
 * log in the data area: its host id, the lease's lver (the fencing token)
 * and a sequence number. It is the lease holder itself, so the daemon's
 * fencing reaches the very process that writes.
 *
 * It never stops on a failed write: a holder that outlives its lease keeps
 * trying, so a fence that does not kill it shows as writes that land late.
 *
 *   tenure-writer RUN_DIR RESOURCE DEVICE DATA_OFFSET HOST_ID
 *
 * Record (512 bytes, little endian): "TNRWRITE", u64 host id, u64 lver,
 * u64 sequence, u64 guest CLOCK_MONOTONIC ns. Record k of host h is at
 * DATA_OFFSET + (h - 1) * LOG_BYTES + (k % LOG_RECORDS) * 512.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tenure.h"

enum { RECORD = 512, LOG_BYTES = 4 << 20, LOG_RECORDS = LOG_BYTES / RECORD };

static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void nap_ms(long ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: tenure-writer RUN_DIR RESOURCE DEVICE DATA_OFFSET HOST_ID\n");
        return 2;
    }
    const char *run_dir = argv[1], *resource = argv[2], *device = argv[3];
    uint64_t data = strtoull(argv[4], NULL, 0), host = strtoull(argv[5], NULL, 0);
    int disk = open(device, O_RDWR | O_DIRECT | O_DSYNC);
    if (disk < 0) { perror(device); return 1; }
    int fd = tenure_register(run_dir);
    if (fd < 0) { fprintf(stderr, "writer: cannot register: %s\n", strerror(-fd)); return 1; }
    char state[1024];
    struct tenure_error err;
    const char *resources[1] = { resource };
    for (;;) {
        memset(&err, 0, sizeof err);
        int rc = tenure_acquire(fd, 0, 0, 1, resources, state, sizeof state, &err);
        if (rc == 0) break;
        if (rc < 0) { fprintf(stderr, "writer: the daemon went away: %s\n", strerror(-rc)); return 1; }
        nap_ms(500);
    }
    const char *colon = strrchr(state, ':');
    uint64_t lver = colon ? strtoull(colon + 1, NULL, 10) : 0;
    printf("writer: host %llu holds %s (lver %llu)\n", (unsigned long long)host, state, (unsigned long long)lver);
    fflush(stdout);
    void *buf;
    if (posix_memalign(&buf, 4096, RECORD) != 0) return 1;
    int last_errno = 0;
    for (uint64_t seq = 0;; seq++) {
        memset(buf, 0, RECORD);
        uint64_t fields[4] = { host, lver, seq, monotonic_ns() };
        memcpy(buf, "TNRWRITE", 8);
        memcpy((char *)buf + 8, fields, sizeof fields);
        off_t at = (off_t)(data + (host - 1) * LOG_BYTES + (seq % LOG_RECORDS) * RECORD);
        for (;;) {
            ssize_t n = pwrite(disk, buf, RECORD, at);
            if (n == RECORD) { last_errno = 0; break; }
            int e = n < 0 ? errno : EIO;
            if (e != last_errno) { fprintf(stderr, "writer: record %llu: %s; retrying\n", (unsigned long long)seq, strerror(e)); last_errno = e; }
            nap_ms(100);
        }
        nap_ms(100);
    }
}
