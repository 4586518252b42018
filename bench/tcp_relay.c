/* tcp_relay: the benchmark's baseline, a bare TCP fan-out relay with no WebSocket, JSON or
   Phoenix. It stands for what the kernel's loopback and system calls allow one thread.

   build/tcp_relay [--host 127.0.0.1] [--port 4001]

   Messages are [u32 big-endian length][payload]. A client's first message joins a group:
   payload 'J' + u32 group; the relay answers 'A' + u32 members so far. Every later message
   is written, as it came, to every other member of the sender's group.

   It is built the way an efficient one-thread relay is (and the way videoroom_signal's server
   is): epoll, non-blocking sockets with TCP_NODELAY, one read of up to 64 KiB per readable
   socket per loop round (as the server's recv), every complete message fanned out by copying
   it into each receiver's output buffer, and at the end of the round one write per client
   that has bytes queued (its whole queue, contiguous); EPOLLOUT only while bytes wait. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE 65536
#define MAX_QUEUE (64u << 20) /* a client this far behind is dropped */

typedef struct client {
    int fd;
    int group;            /* -1 before its join */
    int index_in_group;
    int dirty, want_out;
    uint8_t *in;          /* an unfinished message */
    size_t in_len, in_cap;
    uint8_t *out;         /* queued bytes: out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;
} client;

typedef struct group {
    int *members;
    int count, cap;
} group;

static client *clients; /* indexed by fd */
static int client_cap;
static group *groups;
static int group_cap;
static int *dirty_list;
static int dirty_count;
static int epfd;

static void *grow(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "tcp_relay: out of memory\n");
        exit(1);
    }
    return p;
}

static void set_events(client *c, int out) {
    struct epoll_event ev;
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
    ev.data.fd = c->fd;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void drop(client *c) {
    if (c->group >= 0) {
        group *g = &groups[c->group];
        int last = g->members[--g->count];
        g->members[c->index_in_group] = last;
        clients[last].index_in_group = c->index_in_group;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->group = -1;
}

static void queue(client *c, const uint8_t *bytes, size_t n) {
    if (c->out_len + n > c->out_cap) {
        if (c->out_off > 0) { /* reclaim the written front first */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 16384;
            while (cap < c->out_len + n) cap *= 2;
            c->out = (uint8_t *)grow(c->out, cap);
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, bytes, n);
    c->out_len += n;
    if (!c->dirty) {
        c->dirty = 1;
        dirty_list[dirty_count++] = c->fd;
    }
}

static void on_message(client *c, const uint8_t *frame, size_t n) {
    const uint8_t *p = frame + 4;
    size_t length = n - 4;
    if (c->group < 0) {
        uint32_t id;
        uint8_t ack[9];
        group *g;
        if (length != 5 || p[0] != 'J') {
            drop(c);
            return;
        }
        id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        if (id > 1000000) {
            drop(c);
            return;
        }
        if ((int)id >= group_cap) {
            int cap = group_cap ? group_cap : 64;
            while (cap <= (int)id) cap *= 2;
            groups = (group *)grow(groups, (size_t)cap * sizeof *groups);
            memset(groups + group_cap, 0, (size_t)(cap - group_cap) * sizeof *groups);
            group_cap = cap;
        }
        g = &groups[id];
        if (g->count == g->cap) {
            g->cap = g->cap ? g->cap * 2 : 8;
            g->members = (int *)grow(g->members, (size_t)g->cap * sizeof(int));
        }
        c->group = (int)id;
        c->index_in_group = g->count;
        g->members[g->count++] = c->fd;
        ack[0] = 0; ack[1] = 0; ack[2] = 0; ack[3] = 5; ack[4] = 'A';
        ack[5] = (uint8_t)(g->count >> 24); ack[6] = (uint8_t)(g->count >> 16);
        ack[7] = (uint8_t)(g->count >> 8); ack[8] = (uint8_t)g->count;
        queue(c, ack, sizeof ack);
    } else {
        group *g = &groups[c->group];
        int i;
        for (i = 0; i < g->count; i++)
            if (g->members[i] != c->fd) queue(&clients[g->members[i]], frame, n);
    }
}

static void on_readable(client *c, uint8_t *buffer) {
    size_t have = c->in_len, total, off = 0;
    ssize_t got;
    if (have) memcpy(buffer, c->in, have);
    got = read(c->fd, buffer + have, READ_SIZE);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0) {
        drop(c);
        return;
    }
    total = have + (size_t)got;
    while (total - off >= 4) {
        const uint8_t *p = buffer + off;
        size_t length = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (length > 1u << 20) {
            drop(c);
            return;
        }
        if (total - off < 4 + length) break;
        on_message(c, p, 4 + length);
        if (c->fd < 0) return;
        off += 4 + length;
    }
    c->in_len = 0;
    if (off < total) {
        if (total - off > c->in_cap) {
            c->in_cap = total - off < 4096 ? 4096 : total - off;
            c->in = (uint8_t *)grow(c->in, c->in_cap);
        }
        memcpy(c->in, buffer + off, total - off);
        c->in_len = total - off;
    }
}

static void flush(client *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (c->out_len - c->out_off > MAX_QUEUE) drop(c);
                else if (!c->want_out) set_events(c, 1);
                return;
            }
            drop(c);
            return;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) set_events(c, 0);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 4001, listen_fd, one = 1, i;
    struct sockaddr_in address;
    struct epoll_event ev, events[1024];
    struct rlimit limit;
    uint8_t *buffer;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--host") == 0) host = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: tcp_relay [--host H] [--port P]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
        getrlimit(RLIMIT_NOFILE, &limit);
    }
    client_cap = (int)(limit.rlim_cur > 1048576 ? 1048576 : limit.rlim_cur);
    clients = (client *)calloc((size_t)client_cap, sizeof *clients);
    dirty_list = (int *)calloc((size_t)client_cap, sizeof(int));
    buffer = (uint8_t *)malloc(READ_SIZE + (1u << 20) + 8);
    if (!clients || !dirty_list || !buffer) return 1;
    for (i = 0; i < client_cap; i++) {
        clients[i].fd = -1;
        clients[i].group = -1;
    }
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1 ||
        bind(listen_fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(listen_fd, 4096) != 0) {
        perror("tcp_relay: listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    printf("tcp_relay: listening on %s:%d\n", host, port);
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(epfd, events, 1024, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("tcp_relay: epoll_wait");
            return 1;
        }
        for (i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listen_fd) {
                int c;
                while ((c = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= client_cap) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    clients[c].fd = c;
                    clients[c].group = -1;
                    ev.events = EPOLLIN;
                    ev.data.fd = c;
                    epoll_ctl(epfd, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            if (clients[fd].fd < 0) continue;
            if (events[i].events & EPOLLOUT) {
                if (!clients[fd].dirty) {
                    clients[fd].dirty = 1;
                    dirty_list[dirty_count++] = fd;
                }
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(&clients[fd], buffer);
        }
        for (i = 0; i < dirty_count; i++) {
            client *c = &clients[dirty_list[i]];
            if (c->fd < 0 || !c->dirty) continue;
            c->dirty = 0;
            flush(c);
        }
        dirty_count = 0;
    }
}
