/* ticker: a producer thread feeding every peer of a room, through vrs_wake.

   build/ticker [--host H] [--port P]      (127.0.0.1:4000; --port 0 picks a free port)

   A "game tick" thread runs at 60 Hz: each tick it counts, reads the clock, puts the tick in a
   small queue under a mutex and calls vrs_wake. The server's thread, which waits in vrs_step,
   wakes at once; its on_wake empties the queue and broadcasts each tick to every peer of
   room:ticker as a mediaEvent with data {"tick":N,"time_ms":T}. With the Phoenix client:

       const room = socket.channel("room:ticker");
       room.on("mediaEvent", ({data}) => console.log(data.tick, data.time_ms));
       room.join();

   The header has no threads and no locks: the queue and its lock are the host's. SIGINT and
   SIGTERM stop the program cleanly, through vrs_wake too (it is safe in a signal handler). */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_HZ 60
#define QUEUE_CAPACITY 64 /* a second of ticks; when the server falls that far behind, the
                             newest ticks are dropped and counted */

typedef struct tick {
    long number;
    long long time_ms;
} tick;

/* What the producer and the server's thread share, all under `lock`. */
static struct {
    pthread_mutex_t lock;
    tick ticks[QUEUE_CAPACITY];
    int count;
    long dropped;
    int stop;
} shared = {PTHREAD_MUTEX_INITIALIZER, {{0, 0}}, 0, 0, 0};

static vrs_server *server;
static volatile sig_atomic_t stopping;

static long long clock_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The producer thread: 60 ticks a second until told to stop. */
static void *tick_loop(void *unused) {
    struct timespec next;
    long number = 0;
    int stop = 0;
    (void)unused;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!stop) {
        tick t;
        t.number = ++number;
        t.time_ms = clock_ms();
        pthread_mutex_lock(&shared.lock);
        if (shared.count < QUEUE_CAPACITY) shared.ticks[shared.count++] = t;
        else shared.dropped++;
        stop = shared.stop;
        pthread_mutex_unlock(&shared.lock);
        vrs_wake(server); /* the server's thread sends it now, not at its next timeout */
        next.tv_nsec += 1000000000L / TICK_HZ;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0) {
        }
    }
    return NULL;
}

/* On the server's thread, once per step that a wake ended. */
static void on_wake(vrs_server *s, void *user_data) {
    tick ticks[QUEUE_CAPACITY];
    int count, i;
    vrs_room room = vrs_find_room(s, "ticker");
    (void)user_data;
    pthread_mutex_lock(&shared.lock);
    count = shared.count;
    memcpy(ticks, shared.ticks, (size_t)count * sizeof ticks[0]);
    shared.count = 0;
    pthread_mutex_unlock(&shared.lock);
    for (i = 0; i < count && room.id; i++) {
        char data[64];
        int length = snprintf(data, sizeof data, "{\"tick\":%ld,\"time_ms\":%lld}", ticks[i].number,
                              ticks[i].time_ms);
        vrs_room_broadcast(s, room, data, (size_t)length);
    }
}

static void on_stop_signal(int signal_number) {
    (void)signal_number;
    stopping = 1;
    vrs_wake(server);
}

int main(int argc, char **argv) {
    vrs_desc desc = {0};
    pthread_t producer;
    struct sigaction action;
    sigset_t stop_signals;
    int i;
    desc.port = 4000;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--host") == 0) desc.host = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0) desc.port = atoi(argv[i + 1]) == 0 ? VRS_PORT_ANY : atoi(argv[i + 1]);
        else break;
    }
    if (i < argc) {
        fprintf(stderr, "usage: ticker [--host H] [--port P]\n");
        return 2;
    }
    desc.on_wake = on_wake;
    if (vrs_create(&desc, &server) != VRS_OK) return 1;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    /* The producer starts with the stop signals blocked, so that the handler runs on this
       thread, the one that reads `stopping`. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    if (pthread_create(&producer, NULL, tick_loop, NULL) != 0) return 1;
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    printf("ticker: %d ticks a second to room:ticker on ws://%s:%d/socket/websocket\n", TICK_HZ,
           desc.host ? desc.host : "127.0.0.1", vrs_port(server));
    fflush(stdout);

    while (!stopping) vrs_step(server, 1000);

    /* No thread and no handler may call vrs_wake once vrs_destroy starts. */
    pthread_mutex_lock(&shared.lock);
    shared.stop = 1;
    pthread_mutex_unlock(&shared.lock);
    pthread_join(producer, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    printf("ticker: stopped (%ld ticks dropped)\n", shared.dropped);
    vrs_destroy(server);
    return 0;
}
