// Keep-alive connection holder for scripts/http-load: opens COUNT TCP connections
// to an HTTP server, sends one "GET PATH" with keep-alive on each, reads the whole
// reply, then keeps every answered connection open and idle until told to let go.
// Every connection ends in exactly one outcome, so the counts always add up:
//
//   answered           a whole 200 reply; the connection is then held
//   refused503         a whole 503 reply (the server's "too many connections")
//   otherStatus        a whole reply with any other status
//   closedBeforeReply  the server closed before a whole reply arrived
//   reset              ECONNRESET/EPIPE after the connection was established
//   connectFailed      the connection was never established (refused, unreachable)
//   timedOut           no outcome within --timeout-ms of the connect
//
// At most --window connections are in progress (connecting or awaiting their
// reply) at once, so a listen backlog of 128 is not overrun into SYN retries.
//
//   http-hold --port P [--host 127.0.0.1] [--count 10000] [--path /status.json]
//             [--window 128] [--timeout-ms 10000]
//
// Standard output, one JSON object a line:
//   {"event":"ready",...}      once every connection has its outcome (the counts above,
//                              "established", "held", the time taken, answer latencies)
//   {"event":"status",...}     after a "status FILE" command: the same GET sent again over
//                              the first held connection, its body written to FILE
//   {"event":"released",...}   after "quit", end of input, SIGTERM or SIGINT: how many were
//                              still held and how many the server closed while they were held
// Commands come on standard input, one a line. Exit status: 0, or 2 on a usage or
// setup error (a descriptor limit too low for COUNT).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE_SLOT, CONNECTING, READING, HELD, STATUS_READING, DONE };
enum outcome {
    ANSWERED, REFUSED503, OTHER_STATUS, CLOSED_BEFORE_REPLY, RESET, CONNECT_FAILED, TIMED_OUT, OUTCOMES
};
static const char *outcome_names[OUTCOMES] = {
    "answered", "refused503", "otherStatus", "closedBeforeReply", "reset", "connectFailed", "timedOut",
};

struct conn {
    int fd;
    enum state state;
    int established;
    int64_t started_ns;
    char *buf;
    size_t len, cap;
};

static struct conn *conns;
static int count = 10000, window = 128, timeout_ms = 10000, port = 0;
static const char *host = "127.0.0.1", *path = "/status.json";
static struct sockaddr_in address;
static int epfd;
static char request[512];
static size_t request_len;
static long outcomes[OUTCOMES], established, in_progress, settled, held, closed_while_held, unexpected_bytes;
static int64_t *answer_ns;
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int signal) { stop_signal = signal; }
static long answers;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(const char *why) {
    fprintf(stderr, "http-hold: %s\nusage: http-hold --port P [--host 127.0.0.1] [--count 10000] "
                    "[--path /status.json] [--window 128] [--timeout-ms 10000]\n", why);
    exit(2);
}

static int int_arg(const char *name, const char *value, int low, int high) {
    char *end;
    long v = strtol(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < low || v > high) {
        fprintf(stderr, "http-hold: %s takes an integer %d…%d, not '%s'\n", name, low, high, value);
        exit(2);
    }
    return (int)v;
}

static void watch(int index, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)index};
    if (epoll_ctl(epfd, op, conns[index].fd, &ev) < 0) {
        perror("http-hold: epoll_ctl");
        exit(2);
    }
}

static void release_buffer(struct conn *c) {
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

// Ends a connection in progress with its outcome, and closes it unless it is held.
static void settle(int index, enum outcome outcome) {
    struct conn *c = &conns[index];
    outcomes[outcome]++;
    settled++;
    in_progress--;
    if (outcome == ANSWERED) {
        answer_ns[answers++] = now_ns() - c->started_ns;
        c->state = HELD;
        held++;
        release_buffer(c);
        watch(index, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
        return;
    }
    c->state = DONE;
    release_buffer(c);
    close(c->fd);  // closing removes it from the epoll set
    c->fd = -1;
}

static void start(int index) {
    struct conn *c = &conns[index];
    c->started_ns = now_ns();
    in_progress++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "http-hold: socket: %s (connection %d)\n", strerror(errno), index);
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) == 0 || errno == EINPROGRESS) {
        watch(index, EPOLLOUT, EPOLL_CTL_ADD);
        return;
    }
    settle(index, CONNECT_FAILED);
}

// Returns the length of a whole reply in c->buf (head and body), 0 if incomplete, and
// its status in *status; -1 when the head is not HTTP or has no Content-Length.
static long whole_reply(const struct conn *c, int *status) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (sscanf(c->buf, "HTTP/1.%*d %d", status) != 1) return -1;
    long length = -1;
    for (char *line = memchr(c->buf, '\n', head); line && line < end; line = memchr(line, '\n', (size_t)(end - line))) {
        line++;
        if (strncasecmp(line, "content-length:", 15) == 0) length = strtol(line + 15, NULL, 10);
    }
    if (length < 0) return -1;
    return c->len >= head + (size_t)length ? (long)(head + (size_t)length) : 0;
}

// Reads what the socket has; returns 1 on end of stream, -errno on error, 0 otherwise.
static int fill(struct conn *c) {
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 8192;
            if (c->cap > (1 << 22)) return -EMSGSIZE;
            c->buf = realloc(c->buf, c->cap + 1);
            if (!c->buf) { perror("http-hold: realloc"); exit(2); }
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) { c->len += (size_t)n; c->buf[c->len] = '\0'; continue; }
        if (n == 0) return 1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -errno;
    }
}

static int send_request(struct conn *c) {
    ssize_t n = send(c->fd, request, request_len, MSG_NOSIGNAL);
    // A fresh socket's send buffer takes a request this small whole.
    if (n == (ssize_t)request_len) return 0;
    return n < 0 ? -errno : -EMSGSIZE;
}

static void on_connecting(int index) {
    struct conn *c = &conns[index];
    int error = 0;
    socklen_t size = sizeof error;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error) { settle(index, CONNECT_FAILED); return; }
    established++;
    c->established = 1;
    int sent = send_request(c);
    if (sent < 0) { settle(index, sent == -ECONNRESET || sent == -EPIPE ? RESET : CLOSED_BEFORE_REPLY); return; }
    c->state = READING;
    watch(index, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}

static void on_reading(int index) {
    struct conn *c = &conns[index];
    int ended = fill(c);
    int status = 0;
    long whole = c->len ? whole_reply(c, &status) : 0;
    if (whole > 0) {
        if (status == 200 && ended == 0 && (size_t)whole == c->len) settle(index, ANSWERED);
        else if (status == 200) settle(index, CLOSED_BEFORE_REPLY);  // answered, but not kept open
        else settle(index, status == 503 ? REFUSED503 : OTHER_STATUS);
        return;
    }
    if (whole < 0 || ended == -EMSGSIZE) { settle(index, OTHER_STATUS); return; }
    if (ended == 1) settle(index, CLOSED_BEFORE_REPLY);
    else if (ended < 0) settle(index, ended == -ECONNRESET || ended == -EPIPE ? RESET : CLOSED_BEFORE_REPLY);
}

// A held connection is readable: the server closed it (or sent something unasked).
static void on_held(int index) {
    struct conn *c = &conns[index];
    int ended = fill(c);
    if (c->len) { unexpected_bytes += (long)c->len; c->len = 0; }
    release_buffer(c);
    if (ended != 0) {
        closed_while_held++;
        held--;
        c->state = DONE;
        close(c->fd);
        c->fd = -1;
    }
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double percentile_ms(double p) {
    if (answers == 0) return 0;
    long i = (long)(p * (double)(answers - 1) + 0.5);
    return (double)answer_ns[i] / 1e6;
}

static void print_counts(const char *event, int64_t since) {
    printf("{\"event\":\"%s\",\"count\":%d,\"established\":%ld", event, count, established);
    for (int o = 0; o < OUTCOMES; o++) printf(",\"%s\":%ld", outcome_names[o], outcomes[o]);
    qsort(answer_ns, (size_t)answers, sizeof *answer_ns, compare);
    printf(",\"held\":%ld,\"closedWhileHeld\":%ld,\"unexpectedBytes\":%ld,\"ms\":%.1f,"
           "\"answerP50Ms\":%.2f,\"answerP99Ms\":%.2f,\"answerMaxMs\":%.2f}\n",
           held, closed_while_held, unexpected_bytes, (double)(now_ns() - since) / 1e6,
           percentile_ms(0.5), percentile_ms(0.99), percentile_ms(1.0));
    fflush(stdout);
}

// "status FILE": the GET again over the first held connection (blocking, with a
// deadline: nothing else is in progress by then), its body written to FILE.
static void status_command(const char *file) {
    int index = -1;
    for (int i = 0; i < count && index < 0; i++) if (conns[i].state == HELD) index = i;
    const char *error = NULL;
    int status = 0;
    int64_t started = now_ns();
    if (index < 0) error = "no connection is held";
    struct conn *c = index >= 0 ? &conns[index] : NULL;
    if (!error && send_request(c) < 0) error = "send failed";
    long whole = 0;
    while (!error && whole == 0) {
        int ended = fill(c);
        whole = c->len ? whole_reply(c, &status) : 0;
        if (whole < 0) error = "the reply is not HTTP with a Content-Length";
        else if (whole == 0 && ended != 0) error = "the connection ended before a whole reply";
        else if (whole == 0 && now_ns() - started > (int64_t)timeout_ms * 1000000) error = "no whole reply in time";
        else if (whole == 0) {
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
    if (!error) {
        char *body = memmem(c->buf, c->len, "\r\n\r\n", 4) + 4;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", file);
        FILE *out = fopen(tmp, "w");
        if (!out || fwrite(body, 1, (size_t)(c->buf + whole - body), out) != (size_t)(c->buf + whole - body)
            || fclose(out) != 0 || rename(tmp, file) != 0)
            error = "cannot write the file";
    }
    if (c) release_buffer(c);
    printf("{\"event\":\"status\",\"file\":\"%s\",\"ok\":%s,\"status\":%d,\"ms\":%.2f%s%s%s}\n", file,
           error ? "false" : "true", status, (double)(now_ns() - started) / 1e6,
           error ? ",\"error\":\"" : "", error ? error : "", error ? "\"" : "");
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i];
        if (i + 1 >= argc) usage("every option takes a value");
        const char *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = int_arg(k, v, 1, 65535);
        else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--count")) count = int_arg(k, v, 1, 1000000);
        else if (!strcmp(k, "--path")) path = v;
        else if (!strcmp(k, "--window")) window = int_arg(k, v, 1, 100000);
        else if (!strcmp(k, "--timeout-ms")) timeout_ms = int_arg(k, v, 1, 86400000);
        else usage("unknown option");
    }
    if (!port) usage("--port is required");
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) usage("--host takes an IPv4 address");
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: keep-alive\r\n\r\n", path, host, port);

    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < (rlim_t)count + 16) {
        fprintf(stderr, "http-hold: %d connections need %d descriptors; the hard limit is %lu (raise ulimit -Hn)\n",
                count, count + 16, (unsigned long)limit.rlim_cur);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction stop = {.sa_handler = on_stop_signal};  // no SA_RESTART: epoll_wait returns EINTR
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    conns = calloc((size_t)count, sizeof *conns);
    answer_ns = calloc((size_t)count, sizeof *answer_ns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !answer_ns || epfd < 0) { perror("http-hold: setup"); return 2; }
    for (int i = 0; i < count; i++) conns[i].fd = -1;

    int64_t began = now_ns();
    int next = 0;
    struct epoll_event events[512];
    while (settled < count) {
        while (next < count && in_progress < window) start(next++);
        int n = epoll_wait(epfd, events, 512, 50);
        if (n < 0 && errno != EINTR) { perror("http-hold: epoll_wait"); return 2; }
        for (int e = 0; e < n; e++) {
            int index = (int)events[e].data.u64;
            switch (conns[index].state) {
            case CONNECTING: on_connecting(index); break;
            case READING: on_reading(index); break;
            case HELD: on_held(index); break;
            default: break;
            }
        }
        // Deadlines: only connections in progress can time out (a scan every pass is cheap
        // next to the connects; the window bounds how many are in progress).
        int64_t now = now_ns();
        for (int i = 0; i < next; i++) {
            enum state s = conns[i].state;
            if ((s == CONNECTING || s == READING) && now - conns[i].started_ns > (int64_t)timeout_ms * 1000000)
                settle(i, TIMED_OUT);
        }
    }
    print_counts("ready", began);

    // Holding: held connections are watched for the server closing them; commands on stdin.
    struct epoll_event in = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    // A regular file or /dev/null cannot be watched: then only a signal ends the hold.
    (void)epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in);
    int64_t holding = now_ns();
    char line[4096];
    size_t line_len = 0;
    int quit = 0;
    while (!quit && !stop_signal) {
        int n = epoll_wait(epfd, events, 512, -1);
        if (n < 0 && errno != EINTR) { perror("http-hold: epoll_wait"); return 2; }
        for (int e = 0; e < n && !quit; e++) {
            if (events[e].data.u64 != UINT64_MAX) {
                int index = (int)events[e].data.u64;
                if (conns[index].state == HELD) on_held(index);
                continue;
            }
            ssize_t got = read(0, line + line_len, sizeof line - 1 - line_len);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) { quit = 1; break; }
            line_len += (size_t)got;
            char *newline;
            while (!quit && (newline = memchr(line, '\n', line_len))) {
                *newline = '\0';
                if (!strncmp(line, "status ", 7)) status_command(line + 7);
                else if (!strcmp(line, "quit")) quit = 1;
                else fprintf(stderr, "http-hold: unknown command '%s' (status FILE, quit)\n", line);
                size_t used = (size_t)(newline - line) + 1;
                memmove(line, line + used, line_len - used);
                line_len -= used;
            }
            if (line_len == sizeof line - 1) line_len = 0;  // an overlong line is dropped
        }
    }
    printf("{\"event\":\"released\",\"held\":%ld,\"closedWhileHeld\":%ld,\"unexpectedBytes\":%ld,\"heldMs\":%.1f}\n",
           held, closed_while_held, unexpected_bytes, (double)(now_ns() - holding) / 1e6);
    fflush(stdout);
    return 0;
}
