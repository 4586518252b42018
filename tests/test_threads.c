/* vrs_wake and desc.on_wake: a host feeding clients from other threads and from signal
   handlers. These tests run under ThreadSanitizer (make threads-test), which fails them on any
   data race, on a signal handler that calls what is not async-signal-safe or spoils errno.

   Every test runs twice: the server driven by vrs_step, and by the host's own poll loop
   (vrs_poll_fds, poll(), vrs_process). The server runs on the test's main thread; producers,
   the client's reader and signal senders are threads of their own. Times are bounded and
   generous: speed is measured in bench/wake_latency.c, not here. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#define TT_PRODUCERS 4
#define TT_MESSAGES_EACH 10000
#define TT_QUEUE_CAPACITY 1024
#define TT_WAKE_BOUND_MS 500   /* the median wake ends a 10 s wait well within this */
#define TT_WAKE_LIMIT_MS 5000  /* and every one within half of it, however loaded the machine */

/* ---------------------------------------------------------------------------------------------
   The host's side: a small queue under a mutex, as examples/ticker.c has
   ------------------------------------------------------------------------------------------- */

typedef struct tt_item {
    int producer;
    int number;
} tt_item;

typedef struct tt_host {
    tt_item items[TT_QUEUE_CAPACITY]; /* a ring under tt_queue_lock: items[head .. head + count) */
    int head, count;
    vrs_server *server;
    vrs_conn client;                  /* where on_wake sends what it takes from the queue */
    /* written by the server's thread, read by others: atomics */
    long on_wake_calls;
    long send_failures;
    int wake_again;                   /* on_wake calls vrs_wake itself this many more times */
} tt_host;

static tt_host tt_the_host;
static pthread_mutex_t tt_queue_lock = PTHREAD_MUTEX_INITIALIZER;

static long tt_load(const long *value) { return __atomic_load_n(value, __ATOMIC_SEQ_CST); }
static void tt_store(long *value, long to) { __atomic_store_n(value, to, __ATOMIC_SEQ_CST); }
static void tt_add(long *value, long amount) { __atomic_fetch_add(value, amount, __ATOMIC_SEQ_CST); }

static int64_t tt_now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int tt_push(tt_host *host, tt_item item) {
    int pushed = 0;
    pthread_mutex_lock(&tt_queue_lock);
    if (host->count < TT_QUEUE_CAPACITY) {
        host->items[(host->head + host->count) % TT_QUEUE_CAPACITY] = item;
        host->count++;
        pushed = 1;
    }
    pthread_mutex_unlock(&tt_queue_lock);
    return pushed;
}

static int tt_take_all(tt_host *host, tt_item *out) {
    int n, i;
    pthread_mutex_lock(&tt_queue_lock);
    n = host->count;
    for (i = 0; i < n; i++) out[i] = host->items[(host->head + i) % TT_QUEUE_CAPACITY];
    host->head = (host->head + n) % TT_QUEUE_CAPACITY;
    host->count = 0;
    pthread_mutex_unlock(&tt_queue_lock);
    return n;
}

/* on_wake: empty the queue (outside the lock from here on) and send each item to the client. */
static void tt_on_wake(vrs_server *server, void *user_data) {
    tt_host *host = &tt_the_host;
    static tt_item taken[TT_QUEUE_CAPACITY];
    int n = tt_take_all(host, taken), i;
    (void)user_data;
    tt_add(&host->on_wake_calls, 1);
    if (host->wake_again > 0) { /* as a producer's wake landing while the host empties its queue */
        host->wake_again--;
        vrs_wake(server);
    }
    for (i = 0; i < n; i++) {
        char text[32];
        int length = snprintf(text, sizeof text, "%d %d", taken[i].producer, taken[i].number);
        if (vrs_send_text(server, host->client, text, (size_t)length) != VRS_OK) tt_add(&host->send_failures, 1);
    }
}

/* A recording server with on_wake installed, driven by vrs_step or by its own poll loop. */
static ts_server *tt_server(int own_poll_loop) {
    ts_server *ts = ts_server_new();
    tt_host *host = &tt_the_host;
    if (!ts) return NULL;
    ts->desc.on_wake = tt_on_wake;
    ts->desc.send_queue_size = 8 << 20; /* the whole burst may wait for a slow reader */
    ts->use_poll_api = own_poll_loop;
    if (ts_server_start(ts) != VRS_OK) {
        ts_server_free(ts);
        return NULL;
    }
    memset(host, 0, sizeof *host); /* no other thread runs between tests */
    host->server = ts->server;
    return ts;
}

/* With no wake pending, a step waits its whole timeout and calls no on_wake. */
static void tt_check_quiet(ts_server *ts) {
    long calls = tt_load(&tt_the_host.on_wake_calls);
    int64_t before = ts_now_ms();
    ts_step(ts, 200);
    CHECK(ts_now_ms() - before >= 180);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), calls);
}

static const char *tt_mode(int own_poll_loop) {
#ifdef VRS_USE_EPOLL
    return own_poll_loop ? "own poll loop on the epoll descriptor" : "vrs_step, epoll";
#else
    return own_poll_loop ? "own poll loop" : "vrs_step, poll()";
#endif
}

/* ---------------------------------------------------------------------------------------------
   Four producers, 10,000 numbered messages each, through queue + wake to a real client
   ------------------------------------------------------------------------------------------- */

typedef struct tt_producer {
    int index;
    long full_waits; /* times the queue was full and the producer waited */
} tt_producer;

static void *tt_produce(void *argument) {
    tt_producer *self = (tt_producer *)argument;
    int number;
    for (number = 0; number < TT_MESSAGES_EACH; number++) {
        tt_item item;
        item.producer = self->index;
        item.number = number;
        while (!tt_push(&tt_the_host, item)) {
            self->full_waits++;
            vrs_wake(tt_the_host.server);
            sched_yield();
        }
        vrs_wake(tt_the_host.server);
    }
    return NULL;
}

typedef struct tt_reader {
    ts_client *client;
    long received;
    long out_of_order;
    long malformed;
    int next[TT_PRODUCERS];
    int timed_out;
    long done;                 /* atomic: the server loop may stop */
} tt_reader;

/* The client's side, on a thread of its own: reads frames until every message is in. */
static void *tt_read(void *argument) {
    tt_reader *r = (tt_reader *)argument;
    int64_t deadline = ts_now_ms() + 60000;
    while (r->received < (long)TT_PRODUCERS * TT_MESSAGES_EACH) {
        ts_frame f;
        int producer = -1, number = -1;
        char text[32];
        int64_t left = deadline - ts_now_ms();
        if (left <= 0 || ts_read_frame(r->client, &f, (int)left) != 1) {
            r->timed_out = 1;
            break;
        }
        if (f.opcode != 1 || f.length >= sizeof text) {
            r->malformed++;
            continue;
        }
        memcpy(text, f.payload, f.length);
        text[f.length] = '\0';
        if (sscanf(text, "%d %d", &producer, &number) != 2 || producer < 0 || producer >= TT_PRODUCERS) {
            r->malformed++;
            continue;
        }
        if (number != r->next[producer]) r->out_of_order++;
        r->next[producer] = number + 1;
        r->received++;
    }
    tt_store(&r->done, 1);
    vrs_wake(tt_the_host.server); /* the server's loop waits 10 s a step: end that wait */
    return NULL;
}

static void tt_four_producers(int own_poll_loop) {
    ts_server *ts = tt_server(own_poll_loop);
    ts_client *c;
    tt_producer producers[TT_PRODUCERS];
    pthread_t producer_threads[TT_PRODUCERS], reader_thread;
    tt_reader reader;
    int i, steps = 0;
    int64_t started;
    REQUIRE(ts);
    c = ts_ws_connect(ts);
    REQUIRE(c);
    tt_the_host.client = c->conn;
    c->ts = NULL; /* from here the reader thread owns the client; only this thread steps */
    memset(&reader, 0, sizeof reader);
    reader.client = c;
    started = ts_now_ms();
    REQUIRE(pthread_create(&reader_thread, NULL, tt_read, &reader) == 0);
    for (i = 0; i < TT_PRODUCERS; i++) {
        producers[i].index = i;
        producers[i].full_waits = 0;
        REQUIRE(pthread_create(&producer_threads[i], NULL, tt_produce, &producers[i]) == 0);
    }
    /* the server's thread: every step may wait 10 s; only wakes and the socket end the waits */
    while (!tt_load(&reader.done)) {
        ts_step(ts, 10000);
        steps++;
    }
    for (i = 0; i < TT_PRODUCERS; i++) pthread_join(producer_threads[i], NULL);
    pthread_join(reader_thread, NULL);
    printf("    %s: %ld messages in %lld ms, %d steps, %ld on_wake calls (%.1f messages each)\n",
           tt_mode(own_poll_loop), reader.received, (long long)(ts_now_ms() - started), steps,
           tt_load(&tt_the_host.on_wake_calls),
           (double)reader.received / (double)(tt_load(&tt_the_host.on_wake_calls) ? tt_load(&tt_the_host.on_wake_calls) : 1));
    CHECK(!reader.timed_out);
    CHECK_EQ_INT(reader.received, (long)TT_PRODUCERS * TT_MESSAGES_EACH);
    CHECK_EQ_INT(reader.out_of_order, 0);
    CHECK_EQ_INT(reader.malformed, 0);
    for (i = 0; i < TT_PRODUCERS; i++) CHECK_EQ_INT(reader.next[i], TT_MESSAGES_EACH);
    CHECK_EQ_INT(tt_load(&tt_the_host.send_failures), 0);
    CHECK_EQ_INT(ts->step_errors, 0);
    CHECK(vrs_conn_is_open(ts->server, tt_the_host.client));
    ts_client_free(c);
    ts_server_free(ts);
}

TEST(threads, four_producers_through_queue_and_wake_reach_the_client_in_order) { tt_four_producers(0); }
TEST(threads, four_producers_through_queue_and_wake_with_an_own_poll_loop) { tt_four_producers(1); }

/* ---------------------------------------------------------------------------------------------
   A wake ends a step waiting 10 s
   ------------------------------------------------------------------------------------------- */

#define TT_ROUNDS 20

typedef struct tt_waker {
    long round_done;      /* atomic: rounds the server's thread has finished */
    long woke_at_us[TT_ROUNDS];
} tt_waker;

static void *tt_wake_later(void *argument) {
    tt_waker *w = (tt_waker *)argument;
    int round;
    for (round = 0; round < TT_ROUNDS; round++) {
        int64_t deadline = ts_now_ms() + 20000;
        ts_sleep_ms(20); /* the server's thread is waiting by now */
        tt_store(&w->woke_at_us[round], (long)tt_now_us());
        vrs_wake(tt_the_host.server);
        while (tt_load(&w->round_done) <= round && ts_now_ms() < deadline) ts_sleep_ms(1);
    }
    return NULL;
}

static int tt_compare_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

static void tt_wake_ends_wait(int own_poll_loop) {
    ts_server *ts = tt_server(own_poll_loop);
    tt_waker waker;
    pthread_t thread;
    long latency_us[TT_ROUNDS];
    int64_t before;
    int round;
    REQUIRE(ts);

    /* A wake from the server's own thread (say from a callback) is kept: the next step does not
       wait, and calls on_wake once for the two wakes. */
    vrs_wake(ts->server);
    vrs_wake(ts->server);
    before = ts_now_ms();
    ts_step(ts, 10000);
    CHECK(ts_now_ms() - before < TT_WAKE_LIMIT_MS);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), 1);
    /* and nothing is left pending */
    tt_check_quiet(ts);
    /* A wake that comes while on_wake runs (after the host took its queue) is not lost: the
       next step runs on_wake again without waiting. */
    tt_the_host.wake_again = 1;
    vrs_wake(ts->server);
    ts_step(ts, 10000);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), 2);
    before = ts_now_ms();
    ts_step(ts, 10000);
    CHECK(ts_now_ms() - before < TT_WAKE_LIMIT_MS);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), 3);
    tt_check_quiet(ts);

    memset(&waker, 0, sizeof waker);
    REQUIRE(pthread_create(&thread, NULL, tt_wake_later, &waker) == 0);
    for (round = 0; round < TT_ROUNDS; round++) {
        long calls = tt_load(&tt_the_host.on_wake_calls);
        int64_t returned;
        ts_step(ts, 10000);
        returned = tt_now_us();
        latency_us[round] = (long)(returned - tt_load(&waker.woke_at_us[round]));
        CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), calls + 1);
        tt_store(&waker.round_done, round + 1);
    }
    pthread_join(thread, NULL);
    qsort(latency_us, TT_ROUNDS, sizeof latency_us[0], tt_compare_long);
    printf("    %s: a 10 s step returned %ld us (median) and at most %ld us after the wake\n",
           tt_mode(own_poll_loop), latency_us[TT_ROUNDS / 2], latency_us[TT_ROUNDS - 1]);
    CHECK(latency_us[TT_ROUNDS / 2] < TT_WAKE_BOUND_MS * 1000L);
    CHECK(latency_us[TT_ROUNDS - 1] < TT_WAKE_LIMIT_MS * 1000L);
    CHECK(latency_us[0] >= 0);
    CHECK_EQ_INT(ts->step_errors, 0);
    ts_server_free(ts);
}

TEST(threads, a_wake_from_another_thread_ends_a_ten_second_step) { tt_wake_ends_wait(0); }
TEST(threads, a_wake_from_another_thread_ends_a_ten_second_own_poll) { tt_wake_ends_wait(1); }

/* ---------------------------------------------------------------------------------------------
   Wakes from a SIGUSR1 handler
   ------------------------------------------------------------------------------------------- */

#define TT_SIGNALS 100

static vrs_server *volatile tt_signal_server;

static void tt_on_sigusr1(int signal_number) {
    (void)signal_number;
    vrs_wake(tt_signal_server);
}

typedef struct tt_signaller {
    pthread_t server_thread;
    long done;            /* atomic */
    int unanswered;       /* signals not followed by on_wake within the bound */
    long worst_us;
} tt_signaller;

/* Sends SIGUSR1 to the server's thread (even rounds: the handler interrupts its wait) or to the
   process (odd rounds: any thread may run the handler), and waits for the on_wake each one
   causes. */
static void *tt_signal_loop(void *argument) {
    tt_signaller *s = (tt_signaller *)argument;
    int round;
    for (round = 0; round < TT_SIGNALS; round++) {
        long calls = tt_load(&tt_the_host.on_wake_calls);
        int64_t sent = tt_now_us();
        if (round % 2 == 0) pthread_kill(s->server_thread, SIGUSR1);
        else kill(getpid(), SIGUSR1);
        while (tt_load(&tt_the_host.on_wake_calls) == calls && tt_now_us() - sent < TT_WAKE_LIMIT_MS * 1000L)
            ts_sleep_ms(1);
        if (tt_load(&tt_the_host.on_wake_calls) == calls) s->unanswered++;
        if (tt_now_us() - sent > s->worst_us) s->worst_us = (long)(tt_now_us() - sent);
    }
    tt_store(&s->done, 1);
    vrs_wake(tt_the_host.server);
    return NULL;
}

static void tt_signal_wakes(int own_poll_loop) {
    ts_server *ts = tt_server(own_poll_loop);
    struct sigaction action, previous;
    tt_signaller s;
    pthread_t thread;
    int64_t deadline;
    REQUIRE(ts);
    tt_signal_server = ts->server;
    memset(&action, 0, sizeof action);
    action.sa_handler = tt_on_sigusr1;
    sigemptyset(&action.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &action, &previous) == 0);
    memset(&s, 0, sizeof s);
    s.server_thread = pthread_self();
    REQUIRE(pthread_create(&thread, NULL, tt_signal_loop, &s) == 0);
    deadline = ts_now_ms() + 60000;
    while (!tt_load(&s.done) && ts_now_ms() < deadline) ts_step(ts, 10000);
    pthread_join(thread, NULL);
    sigaction(SIGUSR1, &previous, NULL);
    printf("    %s: %d signals, %ld on_wake calls, slowest %ld us from kill to on_wake\n",
           tt_mode(own_poll_loop), TT_SIGNALS, tt_load(&tt_the_host.on_wake_calls), s.worst_us);
    CHECK_EQ_INT(s.unanswered, 0);
    CHECK(tt_load(&tt_the_host.on_wake_calls) >= TT_SIGNALS);
    CHECK_EQ_INT(ts->step_errors, 0);
    ts_server_free(ts);
}

TEST(threads, wakes_from_a_sigusr1_handler_with_vrs_step) { tt_signal_wakes(0); }
TEST(threads, wakes_from_a_sigusr1_handler_with_an_own_poll_loop) { tt_signal_wakes(1); }

/* ---------------------------------------------------------------------------------------------
   A wake storm: one thread calling vrs_wake in a tight loop
   ------------------------------------------------------------------------------------------- */

#define TT_STORM_MS 1000
#define TT_UNSTEPPED_WAKES 200000 /* more than any pipe holds (64 KiB by default on Linux) */

typedef struct tt_storm {
    long calls;               /* 0: call for TT_STORM_MS; else this many times */
    long slowest_call_us;
    long done;                /* atomic */
} tt_storm;

static void *tt_storm_loop(void *argument) {
    tt_storm *s = (tt_storm *)argument;
    long limit = s->calls;
    int64_t end = tt_now_us() + TT_STORM_MS * 1000L, now = tt_now_us();
    s->calls = 0;
    while (limit ? s->calls < limit : now < end) {
        int64_t after;
        vrs_wake(tt_the_host.server);
        after = tt_now_us();
        if (after - now > s->slowest_call_us) s->slowest_call_us = (long)(after - now);
        s->calls++;
        now = after;
    }
    tt_store(&s->done, 1);
    return NULL;
}

static void tt_wake_storm(int own_poll_loop) {
    ts_server *ts = tt_server(own_poll_loop);
    tt_storm storm;
    pthread_t thread;
    int steps = 0, steps_with_more = 0, blocked;
    int64_t before;
    REQUIRE(ts);

    /* While the server does not step at all, wakes pile up: the caller never waits for it. */
    memset(&storm, 0, sizeof storm);
    storm.calls = TT_UNSTEPPED_WAKES;
    before = ts_now_ms();
    REQUIRE(pthread_create(&thread, NULL, tt_storm_loop, &storm) == 0);
    while (!tt_load(&storm.done) && ts_now_ms() - before < 20000) ts_sleep_ms(10);
    blocked = !tt_load(&storm.done);
    while (!tt_load(&storm.done)) ts_step(ts, 10); /* a blocked caller is freed, to end the test */
    pthread_join(thread, NULL);
    printf("    %s: %d wakes with the server not stepping took %lld ms (slowest call %ld us)\n",
           tt_mode(own_poll_loop), TT_UNSTEPPED_WAKES, (long long)(ts_now_ms() - before), storm.slowest_call_us);
    CHECK(!blocked);
    /* one step takes them all, however many: one on_wake, then quiet */
    ts_step(ts, 0);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), 1);
    tt_check_quiet(ts);

    /* A second of wakes while the server steps: never more than one on_wake a step. */
    memset(&storm, 0, sizeof storm);
    REQUIRE(pthread_create(&thread, NULL, tt_storm_loop, &storm) == 0);
    while (!tt_load(&storm.done)) {
        long calls = tt_load(&tt_the_host.on_wake_calls);
        ts_step(ts, 100);
        if (tt_load(&tt_the_host.on_wake_calls) - calls > 1) steps_with_more++;
        steps++;
    }
    pthread_join(thread, NULL);
    printf("    %s: %ld vrs_wake calls in %d ms (slowest %ld us), %d steps, %ld on_wake calls\n",
           tt_mode(own_poll_loop), storm.calls, TT_STORM_MS, storm.slowest_call_us, steps,
           tt_load(&tt_the_host.on_wake_calls) - 1);
    CHECK(storm.calls > 1000);
    CHECK(steps > 0);
    CHECK_EQ_INT(steps_with_more, 0);
    /* what the storm left pending takes one more on_wake at most; then the server sleeps */
    ts_step(ts, 0);
    tt_check_quiet(ts);
    CHECK_EQ_INT(ts->step_errors, 0);
    ts_server_free(ts);
}

TEST(threads, a_wake_storm_gives_one_on_wake_per_step_and_never_blocks) { tt_wake_storm(0); }
TEST(threads, a_wake_storm_gives_one_on_wake_per_own_poll_and_never_blocks) { tt_wake_storm(1); }

/* ---------------------------------------------------------------------------------------------
   The wake-up descriptor: in the poll set, and closed by vrs_destroy
   ------------------------------------------------------------------------------------------- */

static int tt_open_descriptors(void) {
    int fd, open_count = 0;
    for (fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0) open_count++;
    return open_count;
}

TEST(threads, the_wake_descriptor_is_polled_and_closed_by_destroy) {
    int before = tt_open_descriptors(), count, i, readable = 0;
    ts_server *ts = tt_server(1);
    struct pollfd fds[TS_POLL_CAPACITY];
    REQUIRE(ts);
    CHECK(tt_open_descriptors() > before);
    vrs_wake(NULL); /* harmless */
    /* errno stays as it was, even when the wake cannot be written (a full pipe) */
    for (i = 0; i < TT_UNSTEPPED_WAKES / 2; i++) {
        errno = EDOM;
        vrs_wake(ts->server);
        if (errno != EDOM) break;
    }
    CHECK_EQ_INT(errno, EDOM);
    ts_step(ts, 0);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), 1);
    tt_store(&tt_the_host.on_wake_calls, 0);
    /* a host's own loop sees the wake in what vrs_poll_fds gave it */
    count = vrs_poll_fds(ts->server, fds, TS_POLL_CAPACITY);
    CHECK_EQ_INT(poll(fds, (nfds_t)count, 0), 0);
    vrs_wake(ts->server);
    CHECK_EQ_INT(poll(fds, (nfds_t)count, 1000), 1);
    for (i = 0; i < count; i++)
        if (fds[i].revents & POLLIN) readable++;
    CHECK_EQ_INT(readable, 1);
    vrs_process(ts->server, fds, count);
    CHECK_EQ_INT(tt_load(&tt_the_host.on_wake_calls), 1);
    count = vrs_poll_fds(ts->server, fds, TS_POLL_CAPACITY);
    CHECK_EQ_INT(poll(fds, (nfds_t)count, 0), 0);
    ts_server_free(ts);
    CHECK_EQ_INT(tt_open_descriptors(), before);
}
