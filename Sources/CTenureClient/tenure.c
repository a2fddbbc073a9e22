/*
 * libtenure: see include/tenure.h. Messages follow tenure_proto.h: a 16-byte
 * little-endian header, then fields of a u16 length and their bytes.
 */
#include "tenure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A message being built or read: fields point into buf. */
struct msg {
    unsigned char buf[TENURE_HEADER_BYTES + TENURE_MAX_PAYLOAD_BYTES];
    size_t len;                       /* bytes used in buf */
    int nfields;
    const unsigned char *field[TENURE_MAX_FIELDS];
    uint16_t field_len[TENURE_MAX_FIELDS];
};

static void put16(unsigned char *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff; }
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void begin(struct msg *m) { m->len = TENURE_HEADER_BYTES; m->nfields = 0; }

static int add(struct msg *m, const char *text) {
    size_t n = strlen(text);
    if (n > 0xffff || m->len + 2 + n > sizeof(m->buf) || m->nfields >= TENURE_MAX_FIELDS) return -E2BIG;
    put16(m->buf + m->len, (uint16_t)n);
    memcpy(m->buf + m->len + 2, text, n);
    m->len += 2 + n;
    m->nfields++;
    return 0;
}

static int add_int(struct msg *m, long long v) {
    char text[32];
    snprintf(text, sizeof(text), "%lld", v);
    return add(m, text);
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -errno; }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0) { if (errno == EINTR) continue; return -errno; }
        if (r == 0) return -ECONNRESET;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static uint32_t next_seq(int fd) {
    /* No global state: the sequence only has to match within one call. */
    return (uint32_t)fd * 2654435761u ^ (uint32_t)getpid();
}

/* Sends m as `command`, reads the reply into m, and returns its result:
 * 0, a TENURE_E_* code (err filled), or a negative errno. */
static int call(int fd, uint16_t command, struct msg *m, struct tenure_error *err) {
    uint32_t seq = next_seq(fd);
    put32(m->buf, TENURE_MAGIC);
    put16(m->buf + 4, TENURE_PROTO_VERSION);
    put16(m->buf + 6, command);
    put32(m->buf + 8, (uint32_t)(m->len - TENURE_HEADER_BYTES));
    put32(m->buf + 12, seq);
    int rc = write_all(fd, m->buf, m->len);
    if (rc < 0) return rc;
    if ((rc = read_all(fd, m->buf, TENURE_HEADER_BYTES)) < 0) return rc;
    uint32_t length = get32(m->buf + 8);
    /* A reply to command 0, seq 0 is the daemon refusing the connection
     * itself (too many clients): its error is the answer. */
    int refusal = get16(m->buf + 6) == TENURE_REPLY && get32(m->buf + 12) == 0;
    if (get32(m->buf) != TENURE_MAGIC || get16(m->buf + 4) != TENURE_PROTO_VERSION ||
        (!refusal && (get16(m->buf + 6) != (command | TENURE_REPLY) || get32(m->buf + 12) != seq)) ||
        length > TENURE_MAX_PAYLOAD_BYTES)
        return -EPROTO;
    if ((rc = read_all(fd, m->buf + TENURE_HEADER_BYTES, length)) < 0) return rc;
    m->len = TENURE_HEADER_BYTES + length;
    m->nfields = 0;
    size_t at = TENURE_HEADER_BYTES;
    while (at < m->len) {
        if (m->nfields >= TENURE_MAX_FIELDS || at + 2 > m->len) return -EPROTO;
        uint16_t n = get16(m->buf + at);
        if (at + 2 + n > m->len) return -EPROTO;
        m->field[m->nfields] = m->buf + at + 2;
        m->field_len[m->nfields] = n;
        m->nfields++;
        at += 2 + n;
    }
    if (m->nfields < 1 || m->field_len[0] > 10) return -EPROTO;
    char text[16] = {0};
    memcpy(text, m->field[0], m->field_len[0]);
    int result = atoi(text);
    if (result != TENURE_OK && err) {
        memset(err, 0, sizeof(*err));
        err->result = result;
        char *dest[3] = { err->code, err->message, err->remedy };
        size_t cap[3] = { sizeof(err->code), sizeof(err->message), sizeof(err->remedy) };
        for (int i = 0; i < 3 && i + 1 < m->nfields; i++) {
            size_t n = m->field_len[i + 1] < cap[i] - 1 ? m->field_len[i + 1] : cap[i] - 1;
            memcpy(dest[i], m->field[i + 1], n);
        }
    }
    return result;
}

/* Copies reply field i (and the ones after it, space-joined) into out. */
static int copy_fields(const struct msg *m, int from, char *out, size_t len) {
    if (!out || len == 0) return 0;
    size_t at = 0;
    out[0] = 0;
    for (int i = from; i < m->nfields; i++) {
        size_t need = m->field_len[i] + (at ? 1 : 0);
        if (at + need + 1 > len) return -ENAMETOOLONG;
        if (at) out[at++] = ' ';
        memcpy(out + at, m->field[i], m->field_len[i]);
        at += m->field_len[i];
        out[at] = 0;
    }
    return 0;
}

int tenure_connect(const char *run_dir) {
    const char *dir = run_dir;
    if (!dir) dir = getenv(TENURE_RUN_DIR_ENV);
    if (!dir || !*dir) dir = TENURE_DEFAULT_RUN_DIR;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if ((size_t)snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", dir, TENURE_SOCKET_NAME) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int tenure_register(const char *run_dir) {
    int fd = tenure_connect(run_dir);
    if (fd < 0) return fd;
    struct msg *m = malloc(sizeof(*m));
    if (!m) { close(fd); return -ENOMEM; }
    begin(m);
    int rc = call(fd, TENURE_CMD_REGISTER, m, NULL);
    free(m);
    if (rc != 0) { close(fd); return rc < 0 ? rc : -EPROTO; }
    return fd;
}

int tenure_acquire(int fd, pid_t pid, unsigned flags, int nres, const char *const *resources,
                   char *state, size_t state_len, struct tenure_error *err) {
    if (nres < 1 || nres > TENURE_MAX_RESOURCES_PER_REQUEST) return TENURE_E_BAD_ARGUMENT;
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add_int(m, pid);
    if (!rc) rc = add_int(m, flags);
    for (int i = 0; !rc && i < nres; i++) rc = add(m, resources[i]);
    if (!rc) rc = call(fd, TENURE_CMD_ACQUIRE, m, err);
    if (!rc) rc = copy_fields(m, 1, state, state_len);
    free(m);
    return rc;
}

int tenure_release(int fd, pid_t pid, int nnames, const char *const *names, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add_int(m, pid);
    if (nnames == 0 && !rc) rc = add(m, "*");
    for (int i = 0; !rc && i < nnames; i++) rc = add(m, names[i]);
    if (!rc) rc = call(fd, TENURE_CMD_RELEASE, m, err);
    free(m);
    return rc;
}

int tenure_inquire(int fd, pid_t pid, char *state, size_t state_len, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add_int(m, pid);
    if (!rc) rc = call(fd, TENURE_CMD_INQUIRE, m, err);
    if (!rc) rc = copy_fields(m, 1, state, state_len);
    free(m);
    return rc;
}

int tenure_restrict(int fd, unsigned flags, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add_int(m, flags);
    if (!rc) rc = call(fd, TENURE_CMD_RESTRICT, m, err);
    free(m);
    return rc;
}

int tenure_killpath(int fd, const char *path, int argc, const char *const *argv, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add(m, path);
    for (int i = 0; !rc && i < argc; i++) rc = add(m, argv[i]);
    if (!rc) rc = call(fd, TENURE_CMD_KILLPATH, m, err);
    free(m);
    return rc;
}

int tenure_add_lockspace(int fd, const char *lockspace, int async, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add(m, lockspace);
    if (!rc) rc = add(m, "");      /* the daemon's host name */
    if (!rc) rc = add(m, "0");     /* the daemon's io_timeout */
    if (!rc && async) rc = add(m, "async");
    if (!rc) rc = call(fd, TENURE_CMD_ADD_LOCKSPACE, m, err);
    free(m);
    return rc;
}

int tenure_request(int fd, const char *resource, int force, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add(m, resource);
    if (!rc) rc = add(m, force ? "1" : "2");
    if (!rc) rc = call(fd, TENURE_CMD_REQUEST, m, err);
    free(m);
    return rc;
}

int tenure_set_lvb(int fd, pid_t pid, const char *name, const void *lvb, size_t len, struct tenure_error *err) {
    static const char digits[] = "0123456789abcdef";
    if (len > 4096) return TENURE_E_BAD_ARGUMENT;
    char hex[2 * 4096 + 1];
    const unsigned char *b = lvb;
    for (size_t i = 0; i < len; i++) { hex[2 * i] = digits[b[i] >> 4]; hex[2 * i + 1] = digits[b[i] & 0xf]; }
    hex[2 * len] = 0;
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add_int(m, pid);
    if (!rc) rc = add(m, name);
    if (!rc) rc = add(m, hex);
    if (!rc) rc = call(fd, TENURE_CMD_SET_LVB, m, err);
    free(m);
    return rc;
}

static int nibble(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tenure_get_lvb(int fd, pid_t pid, const char *name, void *lvb, size_t len, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add_int(m, pid);
    if (!rc) rc = add(m, name);
    if (!rc) rc = call(fd, TENURE_CMD_GET_LVB, m, err);
    if (!rc) {
        if (m->nfields < 2 || m->field_len[1] % 2) { free(m); return -EPROTO; }
        size_t n = m->field_len[1] / 2;
        if (n > len) n = len;
        unsigned char *out = lvb;
        for (size_t i = 0; i < n; i++) {
            int hi = nibble(m->field[1][2 * i]), lo = nibble(m->field[1][2 * i + 1]);
            if (hi < 0 || lo < 0) { free(m); return -EPROTO; }
            out[i] = (unsigned char)(hi << 4 | lo);
        }
        rc = (int)n;
    }
    free(m);
    return rc;
}

int tenure_release_orphans(int fd, const char *lockspace, int nnames, const char *const *names, struct tenure_error *err) {
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add(m, lockspace);
    if (nnames == 0 && !rc) rc = add(m, "*");
    for (int i = 0; !rc && i < nnames; i++) rc = add(m, names[i]);
    if (!rc) rc = call(fd, TENURE_CMD_RELEASE_ORPHANS, m, err);
    free(m);
    return rc;
}

int tenure_set_event(int fd, const char *lockspace, uint64_t host_id, uint64_t event, uint64_t data, struct tenure_error *err) {
    char text[3][24];
    if (host_id) snprintf(text[0], sizeof(text[0]), "%llu", (unsigned long long)host_id);
    else snprintf(text[0], sizeof(text[0]), "all");
    snprintf(text[1], sizeof(text[1]), "%llu", (unsigned long long)event);
    snprintf(text[2], sizeof(text[2]), "%llu", (unsigned long long)data);
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add(m, lockspace);
    for (int i = 0; !rc && i < 3; i++) rc = add(m, text[i]);
    if (!rc) rc = call(fd, TENURE_CMD_SET_EVENT, m, err);
    free(m);
    return rc;
}

int tenure_index(int fd, const char *action, const char *index, const char *name, uint64_t offset,
                 char *name_out, size_t name_len, uint64_t *offset_out, struct tenure_error *err) {
    char text[24] = "";
    if (offset) snprintf(text, sizeof(text), "%llu", (unsigned long long)offset);
    struct msg *m = malloc(sizeof(*m));
    if (!m) return -ENOMEM;
    begin(m);
    int rc = add(m, action);
    if (!rc) rc = add(m, index);
    if (!rc) rc = add(m, name ? name : "");
    if (!rc) rc = add(m, text);
    if (!rc) rc = call(fd, TENURE_CMD_INDEX, m, err);
    if (!rc) {
        /* The reply: its result, the entry's name, its offset (decimal). */
        if (m->nfields < 3 || m->field_len[2] == 0 || (size_t)m->field_len[2] >= sizeof(text)) { free(m); return -EPROTO; }
        if (name_out && name_len) {
            if ((size_t)m->field_len[1] + 1 > name_len) { free(m); return -ENAMETOOLONG; }
            memcpy(name_out, m->field[1], m->field_len[1]);
            name_out[m->field_len[1]] = 0;
        }
        memcpy(text, m->field[2], m->field_len[2]);
        text[m->field_len[2]] = 0;
        char *end = NULL;
        unsigned long long found = strtoull(text, &end, 10);
        if (!end || *end) { free(m); return -EPROTO; }
        if (offset_out) *offset_out = found;
    }
    free(m);
    return rc;
}

int tenure_resource_string(char *out, size_t len, const char *lockspace, const char *name,
                           const char *path, uint64_t offset, uint64_t lver) {
    size_t at = 0;
    const char *parts[3] = { lockspace, name, path };
    for (int p = 0; p < 3; p++) {
        for (const char *c = parts[p]; *c; c++) {
            if (p == 2 && (*c == ':' || *c == ' ' || *c == '\\')) {
                if (at + 1 >= len) return -ENAMETOOLONG;
                out[at++] = '\\';
            }
            if (at + 1 >= len) return -ENAMETOOLONG;
            out[at++] = *c;
        }
        if (at + 1 >= len) return -ENAMETOOLONG;
        out[at++] = ':';
    }
    int n = lver ? snprintf(out + at, len - at, "%llu:%llu", (unsigned long long)offset, (unsigned long long)lver)
                 : snprintf(out + at, len - at, "%llu", (unsigned long long)offset);
    if (n < 0 || (size_t)n >= len - at) return -ENAMETOOLONG;
    return (int)(at + (size_t)n);
}

const char *tenure_strerror(int result) {
    switch (result) {
    case TENURE_OK: return "success";
    case TENURE_E_BAD_MESSAGE: return "malformed message";
    case TENURE_E_UNKNOWN_COMMAND: return "unknown command";
    case TENURE_E_TOO_LARGE: return "message too large";
    case TENURE_E_BAD_ARGUMENT: return "bad argument";
    case TENURE_E_NOT_REGISTERED: return "not registered";
    case TENURE_E_PERMISSION: return "permission denied";
    case TENURE_E_HELD: return "held by a live host";
    case TENURE_E_IN_USE: return "in use";
    case TENURE_E_LVER_MISMATCH: return "lease version mismatch";
    case TENURE_E_NOT_OWNER: return "not the owner";
    case TENURE_E_NO_LOCKSPACE: return "lockspace not joined";
    case TENURE_E_LOCKSPACE_LOST: return "lockspace lost";
    case TENURE_E_EXISTS: return "already exists";
    case TENURE_E_IO: return "storage I/O error";
    case TENURE_E_IO_TIMEOUT: return "storage I/O timeout";
    case TENURE_E_BAD_RECORD: return "invalid lease on disk";
    case TENURE_E_SHUTTING_DOWN: return "daemon shutting down";
    case TENURE_E_LIMIT: return "daemon limit reached";
    default: return result < 0 ? strerror(-result) : "unknown result";
    }
}
