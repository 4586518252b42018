/* wake_latency: how long a message takes from a producer thread to a client, through a queue,
   vrs_wake and on_wake, as examples/ticker.c sends its ticks.

   build/bench/wake_latency [--rate HZ] [--seconds S]

   One process, three threads: the server's (vrs_step with a 1 s timeout: only the wake ends
   its wait early), a producer that, HZ times a second, reads CLOCK_MONOTONIC, queues the
   reading under a mutex and calls vrs_wake, and a client that joined room:bench over a
   loopback WebSocket (Phoenix V2) and reads with blocking recv(). on_wake broadcasts each
   queued reading to the room as a mediaEvent; the client subtracts it from the clock as its
   recv() returns. Prints the achieved rate, on_wake calls, p50/p99/p99.9/max of that latency
   over every message, and how long the threads waited for a CPU (the machine's other load);
   fails when a message is lost, duplicated or out of order.
   Linux (TCP_QUICKACK, and the server waits with epoll as the demo server does). */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_CAPACITY 4096

typedef struct reading {
    long sequence;
    long long time_ns;
} reading;

static struct {
    pthread_mutex_t lock;
    reading queue[QUEUE_CAPACITY];
    int count;
    long dropped;       /* the queue was full: counted as lost */
} shared = {PTHREAD_MUTEX_INITIALIZER, {{0, 0}}, 0, 0};

static vrs_server *server;
static long on_wake_calls;
static int joined, client_done; /* under shared.lock */
static long produced;                          /* under shared.lock */
static double rate_hz = 60, seconds = 10;
static int port;

/* Nanoseconds this thread has spent runnable but waiting for a CPU (the second field of
   /proc/thread-self/schedstat): how much the machine's other load got in the way. */
static long long waited_ns;  /* the three threads' sum, under shared.lock */

static long long cpu_wait_ns(void) {
    long long running = 0, waiting = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%lld %lld", &running, &waiting) != 2) waiting = 0;
        fclose(f);
    }
    return waiting;
}

static void add_wait(long long since) {
    long long waited = cpu_wait_ns() - since;
    pthread_mutex_lock(&shared.lock);
    waited_ns += waited;
    pthread_mutex_unlock(&shared.lock);
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int get_flag(const int *flag) {
    int value;
    pthread_mutex_lock(&shared.lock);
    value = *flag;
    pthread_mutex_unlock(&shared.lock);
    return value;
}

static void set_flag(int *flag) {
    pthread_mutex_lock(&shared.lock);
    *flag = 1;
    pthread_mutex_unlock(&shared.lock);
    vrs_wake(server);
}

static void on_wake(vrs_server *s, void *user_data) {
    static reading taken[QUEUE_CAPACITY];
    vrs_room room = vrs_find_room(s, "bench");
    int count, i;
    (void)user_data;
    on_wake_calls++;
    pthread_mutex_lock(&shared.lock);
    count = shared.count;
    memcpy(taken, shared.queue, (size_t)count * sizeof taken[0]);
    shared.count = 0;
    pthread_mutex_unlock(&shared.lock);
    for (i = 0; i < count; i++) {
        char data[64];
        int length = snprintf(data, sizeof data, "{\"q\":%ld,\"t\":%lld}", taken[i].sequence, taken[i].time_ns);
        if (vrs_room_broadcast(s, room, data, (size_t)length) != VRS_OK) {
            fprintf(stderr, "wake_latency: broadcast failed\n");
            exit(1);
        }
    }
}

/* The producer: rate_hz readings a second, paced by absolute deadlines. */
static void *produce(void *unused) {
    long long period = (long long)(1e9 / rate_hz), next = now_ns(), end = next + (long long)(seconds * 1e9);
    long long wait_before = cpu_wait_ns();
    long sequence = 0;
    (void)unused;
    while (next < end) {
        struct timespec at;
        reading r;
        at.tv_sec = (time_t)(next / 1000000000LL);
        at.tv_nsec = (long)(next % 1000000000LL);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0) {
        }
        r.sequence = sequence++;
        r.time_ns = now_ns();
        pthread_mutex_lock(&shared.lock);
        if (shared.count < QUEUE_CAPACITY) shared.queue[shared.count++] = r;
        else shared.dropped++;
        produced = sequence;
        pthread_mutex_unlock(&shared.lock);
        vrs_wake(server);
        next += period;
    }
    for (;;) { /* the last word: a reading numbered -1 */
        int queued;
        pthread_mutex_lock(&shared.lock);
        queued = shared.count < QUEUE_CAPACITY;
        if (queued) {
            shared.queue[shared.count].sequence = -1;
            shared.queue[shared.count++].time_ns = now_ns();
        }
        pthread_mutex_unlock(&shared.lock);
        vrs_wake(server);
        if (queued) break;
    }
    add_wait(wait_before);
    return NULL;
}

/* ---- the client: a blocking loopback WebSocket with the Phoenix V2 serializer ---- */

static unsigned char in[1 << 20];
static size_t in_start, in_end;

static int fill(int fd) {
    int one = 1;
    ssize_t got;
    if (in_start > 0) {
        memmove(in, in + in_start, in_end - in_start);
        in_end -= in_start;
        in_start = 0;
    }
    got = recv(fd, in + in_end, sizeof in - in_end, 0);
    if (got <= 0) return 0;
    /* acknowledge at once, as bench/loadgen.c does in latency runs: with BBR on loopback, small
       segments sent one at a time can otherwise wait for a delayed ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    in_end += (size_t)got;
    return 1;
}

/* A copy of the next whole frame's payload, NUL-terminated; NULL when none is buffered. */
static char *next_frame(void) {
    static char text[65536];
    size_t available = in_end - in_start, header = 2, n;
    unsigned long long length;
    unsigned char *p = in + in_start;
    if (available < 2) return NULL;
    length = p[1] & 0x7F;
    if (length == 126) header = 4;
    if (length == 127) header = 10;
    if (available < header) return NULL;
    if (length == 126) length = (unsigned long long)p[2] << 8 | p[3];
    if (length == 127) {
        int i;
        for (length = 0, i = 0; i < 8; i++) length = length << 8 | p[2 + i];
    }
    if (available < header + length) return NULL;
    n = length < sizeof text - 1 ? (size_t)length : sizeof text - 1;
    memcpy(text, p + header, n);
    text[n] = '\0';
    in_start += header + (size_t)length;
    return text;
}

static void send_text(int fd, const char *text) {
    unsigned char frame[256];
    size_t length = strlen(text), i;
    frame[0] = 0x81;
    frame[1] = (unsigned char)(0x80 | length); /* short texts only; mask 0 leaves them as they are */
    memset(frame + 2, 0, 4);
    for (i = 0; i < length; i++) frame[6 + i] = (unsigned char)text[i];
    if (send(fd, frame, 6 + length, 0) != (ssize_t)(6 + length)) {
        fprintf(stderr, "wake_latency: send failed\n");
        exit(1);
    }
}

static long long *latencies;
static long received, out_of_order;

static void *client(void *unused) {
    struct sockaddr_in address;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    const char *request = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n";
    long capacity = (long)(rate_hz * seconds) + 16;
    struct timeval patience;
    long long wait_before = 0;
    (void)unused;
    patience.tv_sec = 5;
    patience.tv_usec = 0;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience); /* a lost message ends the run */
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        send(fd, request, strlen(request), 0) != (ssize_t)strlen(request)) {
        fprintf(stderr, "wake_latency: cannot connect\n");
        exit(1);
    }
    for (;;) { /* the 101 response head */
        char *end;
        if (!fill(fd)) exit(1);
        in[in_end] = 0;
        end = strstr((char *)in, "\r\n\r\n");
        if (end) {
            if (strncmp((char *)in, "HTTP/1.1 101", 12) != 0) exit(1);
            in_start = (size_t)(end + 4 - (char *)in);
            break;
        }
    }
    send_text(fd, "[\"1\",\"1\",\"room:bench\",\"phx_join\",{}]");
    for (;;) { /* the join reply */
        char *text = next_frame();
        if (!text) {
            if (!fill(fd)) exit(1);
            continue;
        }
        if (strstr(text, "phx_reply") && strstr(text, "\"ok\"")) break;
    }
    set_flag(&joined);
    wait_before = cpu_wait_ns();
    latencies = (long long *)calloc((size_t)capacity, sizeof *latencies);
    for (;;) {
        long long arrived;
        char *text;
        int finished = 0;
        if (!fill(fd)) break;
        arrived = now_ns();
        while ((text = next_frame()) != NULL) {
            char *q = strstr(text, "\"q\":"), *t = strstr(text, "\"t\":");
            long sequence;
            if (!q || !t) continue;
            sequence = strtol(q + 4, NULL, 10);
            if (sequence < 0) finished = 1; /* the producer's last word */
            if (finished) continue;
            if (sequence != received) out_of_order++;
            if (received < capacity) latencies[received] = arrived - strtoll(t + 4, NULL, 10);
            received++;
        }
        if (finished) break;
    }
    close(fd);
    add_wait(wait_before);
    set_flag(&client_done);
    return NULL;
}

static int compare(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(const long long *sorted, long n, double p) {
    long index = (long)(p * (double)(n - 1) + 0.5);
    return (double)sorted[index] / 1000.0;
}

int main(int argc, char **argv) {
    vrs_desc desc = {0};
    pthread_t producer_thread, client_thread;
    long long started, wait_before;
    int i;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rate") == 0) rate_hz = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
        else break;
    }
    if (i < argc || rate_hz <= 0 || seconds <= 0) {
        fprintf(stderr, "usage: wake_latency [--rate HZ] [--seconds S]\n");
        return 2;
    }
    desc.port = VRS_PORT_ANY;
    desc.max_connections = 16;
    desc.on_wake = on_wake;
    if (vrs_create(&desc, &server) != VRS_OK) return 1;
    port = vrs_port(server);
    pthread_create(&client_thread, NULL, client, NULL);
    while (!get_flag(&joined)) vrs_step(server, 1000);
    started = now_ns();
    wait_before = cpu_wait_ns();
    pthread_create(&producer_thread, NULL, produce, NULL);
    while (!get_flag(&client_done)) vrs_step(server, 1000);
    add_wait(wait_before);
    pthread_join(producer_thread, NULL);
    pthread_join(client_thread, NULL);
    vrs_destroy(server);
    {
        double elapsed = (double)(now_ns() - started) / 1e9;
        long n = received < produced ? received : produced;
        if (n <= 0) return 1;
        qsort(latencies, (size_t)n, sizeof *latencies, compare);
        printf("wake_latency: rate %.0f/s asked, %.0f/s sent (%ld messages in %.1f s), %ld on_wake calls "
               "(%.2f messages each), lost %ld, out of order %ld\n",
               rate_hz, (double)produced / seconds, produced, elapsed, on_wake_calls,
               (double)received / (double)(on_wake_calls ? on_wake_calls : 1), produced - received + shared.dropped,
               out_of_order);
        printf("wake_latency: producer's clock to the client's recv(): p50 %.1f us, p99 %.1f us, "
               "p99.9 %.1f us, max %.1f us\n",
               percentile_us(latencies, n, 0.50), percentile_us(latencies, n, 0.99),
               percentile_us(latencies, n, 0.999), percentile_us(latencies, n, 1.0));
        printf("wake_latency: the three threads waited %.0f ms for a CPU in all (%.1f%% of the run): "
               "the machine's other load\n", (double)waited_ns / 1e6, 100.0 * (double)waited_ns / 1e9 / elapsed);
        free(latencies);
        return received == produced && !out_of_order && !shared.dropped ? 0 : 1;
    }
}
