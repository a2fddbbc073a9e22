/*
 * Exercises libtenure against a running daemon, as libvirt would use it:
 *   test_libtenure RUN_DIR RESOURCE_STRING LOCKSPACE NAME PATH OFFSET INDEX
 * (INDEX: a resource index laid out on PATH, LOCKSPACE:PATH:OFFSET.)
 * Prints one line per step ("ok ..." or "FAIL ...") and exits 0 only if
 * every step held. The Swift test (LibtenureTests) starts the daemon,
 * builds this with cc against libtenure.so and checks its output.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tenure.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (cond) { printf("ok   "); } else { printf("FAIL "); failures++; } printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: %s RUN_DIR RESOURCE LOCKSPACE NAME PATH OFFSET INDEX\n", argv[0]); return 2; }
    const char *run_dir = argv[1], *resource = argv[2];
    char built[512], state[1024];
    struct tenure_error err;

    int n = tenure_resource_string(built, sizeof(built), argv[3], argv[4], argv[5], strtoull(argv[6], NULL, 10), 0);
    CHECK(n > 0 && strcmp(built, resource) == 0, "resource string %s", built);
    CHECK(tenure_resource_string(built, 8, "LS", "R", "/a:b c", 1, 2) == -ENAMETOOLONG, "a string that does not fit is refused");
    tenure_resource_string(built, sizeof(built), "LS", "R", "/a:b c", 1048576, 3);
    CHECK(strcmp(built, "LS:R:/a\\:b\\ c:1048576:3") == 0, "paths are escaped: %s", built);

    CHECK(tenure_connect("/nonexistent-run-dir") < 0, "no daemon: a negative errno");

    /* Register, acquire for ourselves, inquire, release. */
    int fd = tenure_register(run_dir);
    CHECK(fd >= 0, "register: fd %d", fd);
    const char *res[1] = { resource };
    int rc = tenure_acquire(fd, 0, 0, 1, res, state, sizeof(state), &err);
    CHECK(rc == 0, "acquire: %d %s -> %s", rc, rc ? err.message : "", state);
    char expected[600];
    snprintf(expected, sizeof(expected), "%s:1", resource);
    CHECK(strcmp(state, expected) == 0, "state string is the resource with lver 1");
    rc = tenure_inquire(fd, 0, state, sizeof(state), &err);
    CHECK(rc == 0 && strcmp(state, expected) == 0, "inquire: %s", state);

    /* A second acquire of the same lease by another process on this host is refused. */
    pid_t child = fork();
    if (child == 0) {
        /* Between fork and exec-like use: only libtenure calls, no threads. */
        int cfd = tenure_register(run_dir);
        struct tenure_error cerr;
        int crc = tenure_acquire(cfd, 0, 0, 1, res, NULL, 0, &cerr);
        _exit(crc == TENURE_E_HELD ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child's acquire of a held lease gets TENURE_E_HELD");

    const char *names[1] = { argv[4] };
    rc = tenure_release(fd, 0, 1, names, &err);
    CHECK(rc == 0, "release: %d", rc);
    rc = tenure_inquire(fd, 0, state, sizeof(state), &err);
    CHECK(rc == 0 && state[0] == 0, "nothing held after release");

    /* Errors carry the daemon's code and message. */
    rc = tenure_release(fd, 0, 1, names, &err);
    CHECK(rc == TENURE_E_NOT_OWNER && strcmp(err.code, "not-owner") == 0 && strlen(err.message) > 0,
          "releasing what is not held: %d %s: %s (%s)", rc, err.code, err.message, tenure_strerror(rc));

    /* killpath, then restrict: afterwards this connection can change nothing. */
    const char *kargs[1] = { "arg" };
    rc = tenure_killpath(fd, "/bin/true", 1, kargs, &err);
    CHECK(rc == 0, "killpath: %d", rc);
    rc = tenure_acquire(fd, 0, 0, 1, res, state, sizeof(state), &err);
    CHECK(rc == 0, "acquire again: %s", state);
    rc = tenure_restrict(fd, TENURE_RESTRICT_ALL, &err);
    CHECK(rc == 0, "restrict: %d", rc);
    rc = tenure_release(fd, 0, 0, NULL, &err);
    CHECK(rc == TENURE_E_PERMISSION, "a restricted connection cannot release: %d %s", rc, err.code);
    close(fd);

    /* Closing the registration released the lease: a new process can take it.
     * Another process: leases belong to a pid until its last connection
     * closes, and a new connection of this pid could reach the daemon before
     * the old one's end does. */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0, "pipe");
    pid_t taker = fork();
    if (taker == 0) {
        int fd2 = tenure_register(run_dir);
        for (int i = 0; i < 50; i++) {
            rc = tenure_acquire(fd2, 0, 0, 1, res, state, sizeof(state), &err);
            if (rc == 0) break;
            usleep(100000);
        }
        if (rc != 0) snprintf(state, sizeof(state), "error %d %s", rc, err.code);
        ssize_t wrote = write(pipefd[1], state, strlen(state) + 1);
        close(fd2);
        _exit(wrote > 0 ? 0 : 1);
    }
    close(pipefd[1]);
    memset(state, 0, sizeof(state));
    ssize_t got = read(pipefd[0], state, sizeof(state) - 1);
    waitpid(taker, NULL, 0);
    snprintf(expected, sizeof(expected), "%s:3", resource);
    CHECK(got > 0 && strcmp(state, expected) == 0, "after the restricted holder's connection closed, another process took it: %s", state);

    /* Lock value blocks: set by one holder, written at its release, read by the next. */
    fd = tenure_register(run_dir);
    for (int i = 0; i < 50; i++) {
        rc = tenure_acquire(fd, 0, TENURE_ACQUIRE_LVB, 1, res, state, sizeof(state), &err);
        if (rc == 0) break;
        usleep(100000);
    }
    CHECK(rc == 0, "acquire with a lock value block: %d %s", rc, rc ? err.message : "");
    CHECK(tenure_set_lvb(fd, 0, argv[4], "hello", 5, &err) == 0, "set_lvb");
    char lvb[64] = {0};
    rc = tenure_get_lvb(fd, 0, argv[4], lvb, sizeof(lvb), &err);
    CHECK(rc == (int)sizeof(lvb) && memcmp(lvb, "hello", 5) == 0, "get_lvb: %d \"%.5s\"", rc, lvb);
    CHECK(tenure_release(fd, 0, 1, names, &err) == 0, "release writes the block");
    CHECK(tenure_acquire(fd, 0, 0, 1, res, state, sizeof(state), &err) == 0, "acquire without a block");
    rc = tenure_get_lvb(fd, 0, argv[4], lvb, sizeof(lvb), &err);
    CHECK(rc == TENURE_E_BAD_ARGUMENT, "get_lvb of a lease acquired without one is refused: %d", rc);
    CHECK(tenure_release(fd, 0, 1, names, &err) == 0, "release");
    memset(lvb, 0, sizeof(lvb));
    CHECK(tenure_acquire(fd, 0, TENURE_ACQUIRE_LVB, 1, res, state, sizeof(state), &err) == 0, "acquire with a block again");
    rc = tenure_get_lvb(fd, 0, argv[4], lvb, 5, &err);
    CHECK(rc == 5 && memcmp(lvb, "hello", 5) == 0, "the next holder reads the block: \"%.5s\"", lvb);
    CHECK(tenure_release(fd, 0, 1, names, &err) == 0, "release");

    /* A persistent lease outlives its process as an orphan, until released. */
    pid_t keeper = fork();
    if (keeper == 0) {
        int kfd = tenure_register(run_dir);
        struct tenure_error kerr;
        _exit(tenure_acquire(kfd, 0, TENURE_ACQUIRE_PERSISTENT, 1, res, NULL, 0, &kerr) == 0 ? 0 : 1);
    }
    waitpid(keeper, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child acquired a persistent lease and exited holding it");
    for (int i = 0; i < 50; i++) {
        rc = tenure_acquire(fd, 0, 0, 1, res, state, sizeof(state), &err);
        if (rc != 0 && strcmp(err.code, "held-by-live-host") == 0 && strstr(err.message, "orphan")) break;
        if (rc == 0) break;
        usleep(100000);
    }
    CHECK(rc == TENURE_E_HELD, "the orphan is refused to a plain acquire: %d %s", rc, err.message);
    rc = tenure_release_orphans(fd, argv[3], 1, names, &err);
    CHECK(rc == 0, "release_orphans: %d %s", rc, rc ? err.message : "");
    rc = tenure_acquire(fd, 0, 0, 1, res, state, sizeof(state), &err);
    CHECK(rc == 0, "acquired once the orphan is released: %d %s", rc, state);
    CHECK(tenure_release(fd, 0, 0, NULL, &err) == 0, "release");

    /* Host events: sent to one host, or to all. */
    CHECK(tenure_set_event(fd, argv[3], 2, 1, 7, &err) == 0, "set_event to host 2");
    CHECK(tenure_set_event(fd, argv[3], 0, 2, 0, &err) == 0, "set_event to every other host");

    /* The resource index: create, look up by name, find the first free area, delete. */
    char entry[64];
    uint64_t at = 0, free_at = 0;
    rc = tenure_index(fd, "create", argv[7], "vm1", 0, entry, sizeof(entry), &at, &err);
    CHECK(rc == 0 && strcmp(entry, "vm1") == 0 && at > 0, "index create: %d %s -> %s at %llu", rc, rc ? err.message : "", entry, (unsigned long long)at);
    uint64_t found = 0;
    rc = tenure_index(fd, "lookup", argv[7], "vm1", 0, entry, sizeof(entry), &found, &err);
    CHECK(rc == 0 && found == at, "index lookup by name: %d -> %llu", rc, (unsigned long long)found);
    rc = tenure_index(fd, "lookup", argv[7], NULL, 0, entry, sizeof(entry), &free_at, &err);
    CHECK(rc == 0 && entry[0] == 0 && free_at > at, "index lookup of the first free area: %d -> \"%s\" at %llu", rc, entry, (unsigned long long)free_at);
    CHECK(tenure_index(fd, "create", argv[7], "vm1", 0, entry, sizeof(entry), &found, &err) > 0, "a second vm1 is refused: %s", err.message);
    CHECK(tenure_index(fd, "frobnicate", argv[7], "vm1", 0, entry, sizeof(entry), &found, &err) == TENURE_E_BAD_ARGUMENT, "an unknown action is refused: %s", err.message);
    rc = tenure_index(fd, "delete", argv[7], "vm1", 0, entry, sizeof(entry), &found, &err);
    CHECK(rc == 0 && found == at, "index delete: %d %s", rc, rc ? err.message : "");
    CHECK(tenure_index(fd, "lookup", argv[7], "vm1", 0, entry, sizeof(entry), &found, &err) > 0, "vm1 is no longer listed");
    close(fd);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
