/* sfu_logic.h: room logic for videoroom_signal that drives the VideoRoom plugin of Janus
   (1.x, multistream) through Janus's Unix-socket transport (pfunix, SOCK_SEQPACKET: one JSON
   message per packet). Include it after videoroom_signal.h in one file; sfu_server.c is the
   program around it, README.md the protocol between the page and this logic.

   What it does:
   - A room of ours is a Janus room, created when its first peer sends "join" and destroyed
     with the room. Each peer gets a Janus session of its own with two handles: a publisher
     (the page's one upstream connection) and one multistream subscriber for every other
     peer's feed. Janus offers to subscribers; this logic passes offers, answers and ICE
     candidates between the page and Janus as `custom` media events.
   - Transactions are matched by id, every request has a deadline, sessions get keepalives,
     and nothing blocks: the socket is non-blocking and its descriptor is polled beside the
     server's (sfu_poll_fd / sfu_process / sfu_timeout_ms).
   - Failures: when the socket goes away (Janus stopped or restarted) every room is closed with
     vrs_room_close (the pages get phx_error and rejoin; their joins wait until Janus is back,
     reconnected every second). A Janus error on one peer's request reaches that peer alone, as
     an "error" media event. A peer that leaves has its Janus session destroyed, handles and
     all, also when it leaves in the middle of setting them up.

   Capacities are fixed (SFU_MAX_*); a full table is answered with an "error" media event.
   Every JSON message is read and written with the library's vrs_json_* functions. */
#ifndef SFU_LOGIC_H
#define SFU_LOGIC_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SFU_MAX_ROOMS /* capacities a host may set before including this file */
#define SFU_MAX_ROOMS 256
#endif
#ifndef SFU_MAX_PEERS
#define SFU_MAX_PEERS 1024
#endif
#define SFU_MAX_TRACKS 4            /* published tracks per peer (audio and video, with room) */
#define SFU_MAX_FEEDS 64            /* feeds one subscriber receives */
#define SFU_MAX_PENDING 2048        /* Janus requests waiting for their answer */
#define SFU_MAX_METADATA 1024       /* bytes of a peer's metadata */
#define SFU_MAX_MESSAGE (256 * 1024) /* one Janus message, and one media event */
#define SFU_OUTBOX_SIZE (1024 * 1024) /* messages waiting for Janus's socket to take them */
#define SFU_REQUEST_TIMEOUT_MS 10000
#define SFU_KEEPALIVE_MS 15000      /* Janus drops a silent session after session_timeout (60 s) */
#define SFU_RECONNECT_MS 1000

typedef enum sfu_request_kind {
    SFU_CREATE_CONTROL_SESSION, /* the host's own session and handle, for creating rooms */
    SFU_ATTACH_CONTROL,
    SFU_CREATE_ROOM,
    SFU_DESTROY_ROOM,
    SFU_CREATE_SESSION, /* a peer's */
    SFU_ATTACH_PUBLISHER,
    SFU_JOIN_PUBLISHER,
    SFU_PUBLISH,
    SFU_ATTACH_SUBSCRIBER,
    SFU_JOIN_SUBSCRIBER,
    SFU_SUBSCRIBE,
    SFU_START,
    SFU_TRICKLE,
    SFU_KEEPALIVE,
    SFU_DESTROY_SESSION
} sfu_request_kind;

typedef enum sfu_peer_state {
    SFU_PEER_IDLE,          /* in the channel, no "join" media event yet */
    SFU_PEER_WAITING,       /* joined while Janus or its room is not ready */
    SFU_PEER_SETTING_UP,    /* session, publisher handle, publisher join in flight */
    SFU_PEER_JOINED         /* peerAccepted sent: in the room */
} sfu_peer_state;

typedef enum sfu_subscriber_state {
    SFU_SUB_NONE,           /* no subscriber handle yet */
    SFU_SUB_BUSY,           /* a request or an offer in flight */
    SFU_SUB_READY           /* idle: may subscribe to more */
} sfu_subscriber_state;

typedef struct sfu_track { char mid[16]; char kind[8]; } sfu_track;

typedef struct sfu_peer {
    int used;
    vrs_peer peer;
    int room;                     /* index in rooms */
    char id[40];                  /* our peer id (the channel's UUID) */
    sfu_peer_state state;
    char metadata[SFU_MAX_METADATA];
    size_t metadata_length;
    uint64_t session, publisher, subscriber, feed;
    int published;
    int track_count;
    sfu_track tracks[SFU_MAX_TRACKS];
    sfu_subscriber_state subscriber_state;
    int subscriptions_stale;      /* feeds came while busy: look again when ready */
    int feed_count;
    uint64_t feeds[SFU_MAX_FEEDS]; /* feeds asked of Janus for this subscriber */
    int64_t keepalive_at;
} sfu_peer;

typedef enum sfu_room_state { SFU_ROOM_NONE, SFU_ROOM_CREATING, SFU_ROOM_READY } sfu_room_state;

typedef struct sfu_room {
    int used;
    vrs_room room;
    sfu_room_state state;
    uint64_t janus_room;
} sfu_room;

typedef struct sfu_pending {
    int used;
    uint64_t transaction;
    sfu_request_kind kind;
    int peer;                     /* index in peers, or -1 */
    vrs_peer peer_handle;         /* to tell the peer from a later one in the same slot */
    int room;
    vrs_room room_handle;
    int acked;                    /* an "ack" came: the answer follows as an event */
    int64_t deadline;
} sfu_pending;

typedef struct sfu_host {
    vrs_server *server;
    const char *socket_path;      /* NULL: the socket is handed over (sfu_adopt_socket) */
    int fd;
    int control_ready;
    uint64_t control_session, control_handle;
    int64_t control_keepalive_at;
    int64_t reconnect_at;
    uint64_t next_transaction;
    int max_publishers;           /* per Janus room */
    int verbose;                  /* 1: log every message to and from Janus (its start) */
    sfu_room rooms[SFU_MAX_ROOMS];
    sfu_peer peers[SFU_MAX_PEERS];
    sfu_pending pending[SFU_MAX_PENDING];
    size_t outbox_length;         /* queued packets: 4-byte length + bytes each */
    char outbox[SFU_OUTBOX_SIZE];
    char message[SFU_MAX_MESSAGE];  /* what is being written to Janus */
    char event[SFU_MAX_MESSAGE];    /* a media event being written */
    char quoted[SFU_MAX_MESSAGE + SFU_MAX_MESSAGE / 4]; /* the event as a JSON string */
    char received[SFU_MAX_MESSAGE]; /* the packet read from Janus, or a decoded media event */
    void (*log)(const char *line, void *user_data);
    void *log_user_data;
    int64_t (*clock_ms)(void);    /* tests set a clock of their own */
} sfu_host;

static void sfu_logf(sfu_host *host, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#include <stdarg.h>
static void sfu_logf(sfu_host *host, const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (host->log) host->log(line, host->log_user_data);
}

static int64_t sfu_monotonic_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t sfu_now(sfu_host *host) { return host->clock_ms ? host->clock_ms() : sfu_monotonic_ms(); }

/* ---- reading JSON: the value at a path ("plugindata.data.room") of a message ---------------- */

static int sfu_find(vrs_span json, const char *path, vrs_span *value) {
    return vrs_json_find(json.ptr, json.length, path, value) == VRS_OK;
}

static int sfu_text(vrs_span json, const char *path, char *out, size_t capacity) {
    return vrs_json_get_string(json.ptr, json.length, path, out, capacity, NULL) == VRS_OK;
}

static int sfu_is(vrs_span json, const char *path, const char *text) {
    char value[64];
    return sfu_text(json, path, value, sizeof value) && strcmp(value, text) == 0;
}

/* A Janus id: a positive integer (they stay below 2^53). */
static int sfu_id(vrs_span json, const char *path, uint64_t *id) {
    int64_t value;
    if (vrs_json_get_int(json.ptr, json.length, path, &value) != VRS_OK || value <= 0) return 0;
    *id = (uint64_t)value;
    return 1;
}

static int sfu_is_string(vrs_span value) { return vrs_json_type_of(value.ptr, value.length) == VRS_JSON_STRING; }

/* ---- the socket ------------------------------------------------------------------------------ */

static void sfu_connection_lost(sfu_host *host, const char *why);

/* Writes queued packets while the socket takes them. */
static void sfu_flush(sfu_host *host) {
    size_t at = 0;
    while (host->fd >= 0 && at < host->outbox_length) {
        uint32_t length;
        ssize_t sent;
        memcpy(&length, host->outbox + at, 4);
        sent = send(host->fd, host->outbox + at + 4, length, MSG_NOSIGNAL);
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        if (sent < 0) {
            sfu_connection_lost(host, strerror(errno));
            return;
        }
        at += 4 + length;
    }
    memmove(host->outbox, host->outbox + at, host->outbox_length - at);
    host->outbox_length -= at;
}

/* Queues one message for Janus; 0 when the outbox is full (Janus is not reading). */
static int sfu_send(sfu_host *host, const char *text, size_t length) {
    uint32_t length32 = (uint32_t)length;
    if (host->fd < 0) return 0;
    if (host->verbose) sfu_logf(host, "to Janus: %.*s", (int)(length < 300 ? length : 300), text);
    if (host->outbox_length + 4 + length > sizeof host->outbox) {
        sfu_connection_lost(host, "Janus is not reading its socket");
        return 0;
    }
    memcpy(host->outbox + host->outbox_length, &length32, 4);
    memcpy(host->outbox + host->outbox_length + 4, text, length);
    host->outbox_length += 4 + length;
    sfu_flush(host);
    return 1;
}

/* ---- requests -------------------------------------------------------------------------------- */

static sfu_pending *sfu_new_pending(sfu_host *host, sfu_request_kind kind, int peer, int room) {
    int i;
    for (i = 0; i < SFU_MAX_PENDING; i++) {
        sfu_pending *p = &host->pending[i];
        if (p->used) continue;
        memset(p, 0, sizeof *p);
        p->used = 1;
        p->transaction = ++host->next_transaction;
        p->kind = kind;
        p->peer = peer;
        if (peer >= 0) p->peer_handle = host->peers[peer].peer;
        p->room = room;
        if (room >= 0) p->room_handle = host->rooms[room].room;
        p->deadline = sfu_now(host) + SFU_REQUEST_TIMEOUT_MS;
        return p;
    }
    return NULL;
}

/* Starts a request: {"janus":VERB,"transaction":"N"[,"session_id":S][,"handle_id":H] ...
   The caller adds its members and calls sfu_request_send. */
static void sfu_request_begin(sfu_host *host, vrs_json_writer *w, const sfu_pending *pending, const char *verb,
                              uint64_t session, uint64_t handle) {
    char transaction[24];
    snprintf(transaction, sizeof transaction, "%llu", (unsigned long long)pending->transaction);
    vrs_json_writer_init(w, host->message, sizeof host->message);
    vrs_json_begin_object(w);
    vrs_json_key(w, "janus");
    vrs_json_cstring(w, verb);
    vrs_json_key(w, "transaction");
    vrs_json_cstring(w, transaction);
    if (session) {
        vrs_json_key(w, "session_id");
        vrs_json_int(w, (int64_t)session);
    }
    if (handle) {
        vrs_json_key(w, "handle_id");
        vrs_json_int(w, (int64_t)handle);
    }
}

static int sfu_request_send(sfu_host *host, sfu_pending *pending, vrs_json_writer *w) {
    size_t length;
    vrs_json_end_object(w);
    if (vrs_json_finish(w, &length) != VRS_OK || !sfu_send(host, w->buffer, length)) {
        pending->used = 0;
        return 0;
    }
    return 1;
}

/* A request to Janus itself (create, attach the VideoRoom plugin, keepalive, destroy). */
static int sfu_simple_request(sfu_host *host, sfu_request_kind kind, int peer, const char *verb, uint64_t session) {
    sfu_pending *pending = sfu_new_pending(host, kind, peer, -1);
    vrs_json_writer w;
    if (!pending) return 0;
    sfu_request_begin(host, &w, pending, verb, session, 0);
    if (strcmp(verb, "attach") == 0) {
        vrs_json_key(&w, "plugin");
        vrs_json_cstring(&w, "janus.plugin.videoroom");
    }
    return sfu_request_send(host, pending, &w);
}

/* ---- media events to the pages ---------------------------------------------------------------- */

/* A media event E: {"type": TYPE, ...}; the caller writes the rest (usually "data") and sends
   it with sfu_send_event or sfu_send_to_room. */
static void sfu_event_begin(sfu_host *host, vrs_json_writer *w, const char *type) {
    vrs_json_writer_init(w, host->event, sizeof host->event);
    vrs_json_begin_object(w);
    vrs_json_key(w, "type");
    vrs_json_cstring(w, type);
}

/* Ends the event and makes D, the event's text in a JSON string (as Membrane's server sends
   them), in host->quoted. Returns D's length; 0 when it did not fit. */
static size_t sfu_event_end(sfu_host *host, vrs_json_writer *w) {
    vrs_json_writer d;
    size_t length = 0, quoted_length = 0;
    vrs_json_end_object(w);
    if (vrs_json_finish(w, &length) == VRS_OK) {
        vrs_json_writer_init(&d, host->quoted, sizeof host->quoted);
        vrs_json_string(&d, w->buffer, length);
        if (vrs_json_finish(&d, &quoted_length) == VRS_OK) return quoted_length;
    }
    sfu_logf(host, "a media event did not fit (%zu bytes)", length);
    return 0;
}

static void sfu_send_d(sfu_host *host, vrs_peer to, size_t length) {
    vrs_result result = length ? vrs_peer_send(host->server, to, host->quoted, length) : VRS_ERROR_TOO_LARGE;
    if (result != VRS_OK)
        sfu_logf(host, "a media event for %s was not sent: %s", vrs_peer_id(host->server, to), vrs_result_string(result));
}

static void sfu_send_event(sfu_host *host, vrs_peer to, vrs_json_writer *event) {
    sfu_send_d(host, to, sfu_event_end(host, event));
}

/* The event to every peer of the room that is in the call, but `except`. */
static void sfu_send_to_room(sfu_host *host, int room, int except, vrs_json_writer *event) {
    size_t length = sfu_event_end(host, event);
    int i;
    for (i = 0; i < SFU_MAX_PEERS; i++) {
        const sfu_peer *p = &host->peers[i];
        if (p->used && p->room == room && i != except && p->state == SFU_PEER_JOINED) sfu_send_d(host, p->peer, length);
    }
}

/* {"type":"error","data":{"message":...}} to one peer: its request failed. */
static void sfu_send_error_to(sfu_host *host, vrs_peer to, const char *message) {
    vrs_json_writer w;
    sfu_event_begin(host, &w, "error");
    vrs_json_key(&w, "data");
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "message");
    vrs_json_cstring(&w, message);
    vrs_json_end_object(&w);
    sfu_send_event(host, to, &w);
}

static void sfu_send_error(sfu_host *host, const sfu_peer *to, const char *message) {
    sfu_send_error_to(host, to->peer, message);
}

/* A track's id: "<peer id>:<mid in its publisher's connection>". */
static void sfu_write_track_id(vrs_json_writer *w, const sfu_peer *peer, const char *mid, int as_key) {
    char id[64];
    snprintf(id, sizeof id, "%s:%s", peer->id, mid);
    if (as_key) vrs_json_key(w, id);
    else vrs_json_cstring(w, id);
}

/* {"<peer>:<mid>": {"kind": K}, ...}: the tracks the peer publishes. */
static void sfu_write_tracks(vrs_json_writer *w, const sfu_peer *peer) {
    int i;
    vrs_json_begin_object(w);
    for (i = 0; peer->published && i < peer->track_count; i++) {
        sfu_write_track_id(w, peer, peer->tracks[i].mid, 1);
        vrs_json_begin_object(w);
        vrs_json_key(w, "kind");
        vrs_json_cstring(w, peer->tracks[i].kind);
        vrs_json_end_object(w);
    }
    vrs_json_end_object(w);
}

static void sfu_write_peer(vrs_json_writer *w, const sfu_peer *peer) {
    vrs_json_begin_object(w);
    vrs_json_key(w, "id");
    vrs_json_cstring(w, peer->id);
    vrs_json_key(w, "metadata");
    vrs_json_raw(w, peer->metadata, peer->metadata_length);
    vrs_json_key(w, "trackIdToMetadata");
    sfu_write_tracks(w, peer);
    vrs_json_end_object(w);
}

/* tracksAdded / tracksRemoved: the peer's tracks to the others in the call. */
static void sfu_announce_tracks(sfu_host *host, int index, int added) {
    sfu_peer *peer = &host->peers[index];
    vrs_json_writer w;
    int i;
    if (!peer->published || peer->track_count == 0) return;
    sfu_event_begin(host, &w, added ? "tracksAdded" : "tracksRemoved");
    vrs_json_key(&w, "data");
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "peerId");
    vrs_json_cstring(&w, peer->id);
    if (added) {
        vrs_json_key(&w, "trackIdToMetadata");
        sfu_write_tracks(&w, peer);
    } else {
        vrs_json_key(&w, "trackIds");
        vrs_json_begin_array(&w);
        for (i = 0; i < peer->track_count; i++) sfu_write_track_id(&w, peer, peer->tracks[i].mid, 0);
        vrs_json_end_array(&w);
    }
    vrs_json_end_object(&w);
    sfu_send_to_room(host, peer->room, index, &w);
}

/* ---- peers and rooms ------------------------------------------------------------------------- */

static sfu_peer *sfu_pending_peer(sfu_host *host, const sfu_pending *pending) {
    sfu_peer *peer;
    if (pending->peer < 0) return NULL;
    peer = &host->peers[pending->peer];
    return peer->used && peer->peer.id == pending->peer_handle.id ? peer : NULL;
}

/* The host's record of a peer or room (-1: none, or one of another server than the host's). */
static int sfu_peer_index(sfu_host *host, vrs_server *server, vrs_peer handle) {
    sfu_peer *peer = server == host->server ? (sfu_peer *)vrs_peer_user_data(server, handle) : NULL;
    return peer && peer->used && peer->peer.id == handle.id ? (int)(peer - host->peers) : -1;
}

static int sfu_room_index(sfu_host *host, vrs_server *server, vrs_room handle) {
    sfu_room *room = server == host->server ? (sfu_room *)vrs_room_user_data(server, handle) : NULL;
    return room && room->used && room->room.id == handle.id ? (int)(room - host->rooms) : -1;
}

static void sfu_destroy_session(sfu_host *host, uint64_t session) {
    if (session && host->fd >= 0) sfu_simple_request(host, SFU_DESTROY_SESSION, -1, "destroy", session);
}

/* Everything Janus holds for the peer goes; the peer is back to before its "join". */
static void sfu_release_peer(sfu_host *host, int index) {
    sfu_peer *peer = &host->peers[index];
    sfu_destroy_session(host, peer->session);
    peer->session = peer->publisher = peer->subscriber = peer->feed = 0;
    peer->published = 0;
    peer->track_count = 0;
    peer->subscriber_state = SFU_SUB_NONE;
    peer->subscriptions_stale = 0;
    peer->feed_count = 0;
    peer->state = SFU_PEER_IDLE;
}

/* A peer in the call leaves it: the others are told, its Janus session is destroyed. */
static void sfu_peer_leaves(sfu_host *host, int index) {
    sfu_peer *peer = &host->peers[index];
    if (peer->state == SFU_PEER_JOINED) {
        vrs_json_writer w;
        sfu_announce_tracks(host, index, 0);
        sfu_event_begin(host, &w, "peerLeft");
        vrs_json_key(&w, "data");
        vrs_json_begin_object(&w);
        vrs_json_key(&w, "peerId");
        vrs_json_cstring(&w, peer->id);
        vrs_json_end_object(&w);
        sfu_send_to_room(host, peer->room, index, &w);
    }
    sfu_release_peer(host, index);
}

static void sfu_start_peer(sfu_host *host, int index);

/* A VideoRoom request on the host's own handle (create and destroy rooms): the request and
   its "body" are begun, with body.request = `request`; the caller adds the body's members and
   calls sfu_control_send. */
static sfu_pending *sfu_control_begin(sfu_host *host, vrs_json_writer *w, sfu_request_kind kind, int room,
                                      const char *request) {
    sfu_pending *pending = sfu_new_pending(host, kind, -1, room);
    if (!pending) return NULL;
    sfu_request_begin(host, w, pending, "message", host->control_session, host->control_handle);
    vrs_json_key(w, "body");
    vrs_json_begin_object(w);
    vrs_json_key(w, "request");
    vrs_json_cstring(w, request);
    return pending;
}

static int sfu_control_send(sfu_host *host, sfu_pending *pending, vrs_json_writer *w) {
    vrs_json_end_object(w);
    return sfu_request_send(host, pending, w);
}

static void sfu_destroy_janus_room(sfu_host *host, uint64_t janus_room) {
    vrs_json_writer w;
    sfu_pending *pending = sfu_control_begin(host, &w, SFU_DESTROY_ROOM, -1, "destroy");
    if (!pending) return;
    vrs_json_key(&w, "room");
    vrs_json_int(&w, (int64_t)janus_room);
    sfu_control_send(host, pending, &w);
}

/* Creates the room in Janus if it is not there yet; the peers that wait go on once it is. */
static void sfu_need_room(sfu_host *host, int room_index) {
    sfu_room *room = &host->rooms[room_index];
    sfu_pending *pending;
    vrs_json_writer w;
    if (room->state != SFU_ROOM_NONE || !host->control_ready) return;
    pending = sfu_control_begin(host, &w, SFU_CREATE_ROOM, room_index, "create");
    if (!pending) return;
    vrs_json_key(&w, "publishers");
    vrs_json_int(&w, host->max_publishers);
    vrs_json_key(&w, "description");
    vrs_json_cstring(&w, vrs_room_name(host->server, room->room));
    /* VP8 and Opus: what every browser sends; no recording, no joining events. */
    vrs_json_key(&w, "videocodec");
    vrs_json_cstring(&w, "vp8");
    vrs_json_key(&w, "audiocodec");
    vrs_json_cstring(&w, "opus");
    vrs_json_key(&w, "notify_joining");
    vrs_json_bool(&w, 0);
    if (sfu_control_send(host, pending, &w)) room->state = SFU_ROOM_CREATING;
}

/* Moves a peer that asked to join as far as Janus allows now. */
static void sfu_start_peer(sfu_host *host, int index) {
    sfu_peer *peer = &host->peers[index];
    sfu_room *room = &host->rooms[peer->room];
    if (!host->control_ready || room->state != SFU_ROOM_READY) {
        if (host->fd < 0 && peer->state != SFU_PEER_WAITING)
            sfu_send_error(host, peer, "the media server is unavailable: you will join when it is back");
        peer->state = SFU_PEER_WAITING;
        sfu_need_room(host, peer->room);
        return;
    }
    if (!sfu_simple_request(host, SFU_CREATE_SESSION, index, "create", 0)) {
        sfu_send_error(host, peer, "the media server is busy: try again");
        peer->state = SFU_PEER_IDLE;
        return;
    }
    peer->state = SFU_PEER_SETTING_UP;
}

static void sfu_attach(sfu_host *host, sfu_request_kind kind, int index) {
    sfu_peer *peer = &host->peers[index];
    if (!sfu_simple_request(host, kind, index, "attach", peer->session))
        sfu_send_error(host, peer, "the media server is busy: try again");
}

/* A VideoRoom request on one of the peer's handles: begun like sfu_control_begin; the caller
   adds the body's members and calls sfu_plugin_send. */
static sfu_pending *sfu_plugin_begin(sfu_host *host, vrs_json_writer *w, sfu_request_kind kind, int index,
                                     uint64_t handle, const char *request) {
    sfu_peer *peer = &host->peers[index];
    sfu_pending *pending = sfu_new_pending(host, kind, index, peer->room);
    if (!pending) {
        sfu_send_error(host, peer, "the media server is busy: try again");
        return NULL;
    }
    sfu_request_begin(host, w, pending, "message", peer->session, handle);
    vrs_json_key(w, "body");
    vrs_json_begin_object(w);
    vrs_json_key(w, "request");
    vrs_json_cstring(w, request);
    return pending;
}

/* Ends the body and sends the request, with a JSEP {"type": jsep_type, "sdp": sdp} when
   jsep_type is not NULL (sdp is the JSON string the page sent). */
static int sfu_plugin_send(sfu_host *host, sfu_pending *pending, vrs_json_writer *w, const char *jsep_type, vrs_span sdp) {
    vrs_json_end_object(w);
    if (jsep_type) {
        vrs_json_key(w, "jsep");
        vrs_json_begin_object(w);
        vrs_json_key(w, "type");
        vrs_json_cstring(w, jsep_type);
        vrs_json_key(w, "sdp");
        vrs_json_raw(w, sdp.ptr, sdp.length);
        vrs_json_end_object(w);
    }
    return sfu_request_send(host, pending, w);
}

/* A request with nothing in its body but its name (and maybe a JSEP). */
static int sfu_plugin_request(sfu_host *host, sfu_request_kind kind, int index, uint64_t handle, const char *request,
                              const char *jsep_type, vrs_span sdp) {
    vrs_json_writer w;
    sfu_pending *pending = sfu_plugin_begin(host, &w, kind, index, handle, request);
    return pending && sfu_plugin_send(host, pending, &w, jsep_type, sdp);
}

static int sfu_has_feed(const sfu_peer *peer, uint64_t feed) {
    int i;
    for (i = 0; i < peer->feed_count; i++)
        if (peer->feeds[i] == feed) return 1;
    return 0;
}

/* Brings the peer's subscription up to the room's published feeds: the first time by joining
   as a subscriber with every feed, later with "subscribe" for the new ones (feeds that left
   are taken out by Janus itself, which then offers again). One change at a time: feeds that
   come meanwhile are asked for when Janus has started the last change. */
static void sfu_update_subscriptions(sfu_host *host, int index) {
    sfu_peer *peer = &host->peers[index];
    vrs_json_writer w;
    vrs_span no_sdp = {NULL, 0};
    sfu_pending *pending;
    uint64_t wanted[SFU_MAX_FEEDS];
    int i, j, count = 0, kept = 0, joining;
    if (peer->state != SFU_PEER_JOINED) return;
    if (peer->subscriber_state == SFU_SUB_BUSY) {
        peer->subscriptions_stale = 1;
        return;
    }
    peer->subscriptions_stale = 0;
    for (i = 0; i < peer->feed_count; i++) { /* feeds that went away are no longer asked for */
        int present = 0;
        for (j = 0; j < SFU_MAX_PEERS && !present; j++) {
            const sfu_peer *other = &host->peers[j];
            present = other->used && other->room == peer->room && other->published && other->feed == peer->feeds[i];
        }
        if (present) peer->feeds[kept++] = peer->feeds[i];
    }
    peer->feed_count = kept;
    for (i = 0; i < SFU_MAX_PEERS && peer->feed_count + count < SFU_MAX_FEEDS; i++) {
        const sfu_peer *other = &host->peers[i];
        if (i != index && other->used && other->room == peer->room && other->published && !sfu_has_feed(peer, other->feed))
            wanted[count++] = other->feed;
    }
    if (count == 0) return;
    if (!peer->subscriber) { /* the handle first; this runs again once it is attached */
        peer->subscriber_state = SFU_SUB_BUSY;
        sfu_attach(host, SFU_ATTACH_SUBSCRIBER, index);
        return;
    }
    joining = peer->subscriber_state == SFU_SUB_NONE;
    pending = sfu_plugin_begin(host, &w, joining ? SFU_JOIN_SUBSCRIBER : SFU_SUBSCRIBE, index, peer->subscriber,
                               joining ? "join" : "subscribe");
    if (!pending) return;
    if (joining) {
        vrs_json_key(&w, "ptype");
        vrs_json_cstring(&w, "subscriber");
        vrs_json_key(&w, "room");
        vrs_json_int(&w, (int64_t)host->rooms[peer->room].janus_room);
    }
    vrs_json_key(&w, "streams");
    vrs_json_begin_array(&w);
    for (i = 0; i < count; i++) {
        vrs_json_begin_object(&w);
        vrs_json_key(&w, "feed");
        vrs_json_int(&w, (int64_t)wanted[i]);
        vrs_json_end_object(&w);
    }
    vrs_json_end_array(&w);
    if (!sfu_plugin_send(host, pending, &w, NULL, no_sdp)) return;
    peer->subscriber_state = SFU_SUB_BUSY;
    memcpy(peer->feeds + peer->feed_count, wanted, (size_t)count * sizeof wanted[0]);
    peer->feed_count += count;
}

static void sfu_room_feeds_changed(sfu_host *host, int room) {
    int i;
    for (i = 0; i < SFU_MAX_PEERS; i++)
        if (host->peers[i].used && host->peers[i].room == room) sfu_update_subscriptions(host, i);
}

/* ---- what Janus says ------------------------------------------------------------------------- */

/* The error text of a failed answer: Janus's own ("error":{"reason"}) or the plugin's. */
static void sfu_error_text(vrs_span message, char *out, size_t capacity) {
    if (!sfu_text(message, "error.reason", out, capacity) && !sfu_text(message, "plugindata.data.error", out, capacity))
        snprintf(out, capacity, "unknown error");
}

/* The peer's request failed (an error from Janus or no answer in time): it alone is told. */
static void sfu_peer_request_failed(sfu_host *host, sfu_pending *pending, const char *reason) {
    sfu_peer *peer = sfu_pending_peer(host, pending);
    char message[384];
    if (!peer) return;
    snprintf(message, sizeof message, "media server: %s", reason);
    sfu_send_error(host, peer, message);
    switch (pending->kind) {
    case SFU_CREATE_SESSION:
    case SFU_ATTACH_PUBLISHER:
    case SFU_JOIN_PUBLISHER:
        sfu_release_peer(host, pending->peer); /* not in the call: it may send "join" again */
        break;
    case SFU_ATTACH_SUBSCRIBER:
    case SFU_JOIN_SUBSCRIBER:
    case SFU_SUBSCRIBE:
    case SFU_START:
        /* Ready again; the next change of feeds tries again. */
        peer->subscriber_state = peer->subscriber && pending->kind != SFU_JOIN_SUBSCRIBER ? SFU_SUB_READY : SFU_SUB_NONE;
        if (pending->kind == SFU_JOIN_SUBSCRIBER) peer->feed_count = 0;
        break;
    default:
        break;
    }
}

static void sfu_peer_accepted(sfu_host *host, int index) {
    sfu_peer *peer = &host->peers[index];
    vrs_json_writer w;
    int i;
    peer->state = SFU_PEER_JOINED;
    sfu_event_begin(host, &w, "peerAccepted");
    vrs_json_key(&w, "data");
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "id");
    vrs_json_cstring(&w, peer->id);
    vrs_json_key(&w, "peersInRoom");
    vrs_json_begin_array(&w);
    for (i = 0; i < SFU_MAX_PEERS; i++) {
        const sfu_peer *other = &host->peers[i];
        if (i != index && other->used && other->room == peer->room && other->state == SFU_PEER_JOINED) sfu_write_peer(&w, other);
    }
    vrs_json_end_array(&w);
    vrs_json_end_object(&w);
    sfu_send_event(host, peer->peer, &w);
    sfu_event_begin(host, &w, "peerJoined");
    vrs_json_key(&w, "data");
    vrs_json_begin_object(&w);
    vrs_json_key(&w, "peer");
    sfu_write_peer(&w, peer);
    vrs_json_end_object(&w);
    sfu_send_to_room(host, peer->room, index, &w);
    sfu_update_subscriptions(host, index);
}

/* The tracks of a publisher's "configured" event: streams [{type, mid}, ...]. */
static void sfu_read_tracks(sfu_peer *peer, vrs_span streams) {
    vrs_json_iterator it;
    vrs_span stream;
    peer->track_count = 0;
    if (vrs_json_iterate(streams.ptr, streams.length, NULL, &it) != VRS_OK) return;
    while (peer->track_count < SFU_MAX_TRACKS && vrs_json_next(&it, NULL, &stream)) {
        sfu_track *track = &peer->tracks[peer->track_count];
        if (!sfu_text(stream, "mid", track->mid, sizeof track->mid) || !sfu_text(stream, "type", track->kind, sizeof track->kind))
            continue;
        if (strcmp(track->kind, "audio") == 0 || strcmp(track->kind, "video") == 0) peer->track_count++;
    }
}

/* A `custom` event to the page: {"type":"custom","data":{"type":TYPE,"data":{"connection":C,
   ...}}}; the caller adds the inner data's members and calls sfu_custom_send. */
static void sfu_custom_begin(sfu_host *host, vrs_json_writer *w, const char *type, int subscriber) {
    sfu_event_begin(host, w, "custom");
    vrs_json_key(w, "data");
    vrs_json_begin_object(w);
    vrs_json_key(w, "type");
    vrs_json_cstring(w, type);
    vrs_json_key(w, "data");
    vrs_json_begin_object(w);
    vrs_json_key(w, "connection");
    vrs_json_cstring(w, subscriber ? "subscribe" : "publish");
}

static void sfu_custom_send(sfu_host *host, const sfu_peer *to, vrs_json_writer *w) {
    vrs_json_end_object(w);
    vrs_json_end_object(w);
    sfu_send_event(host, to->peer, w);
}

/* A subscriber offer from Janus ("attached" or "updated"): to the page with the mid of every
   track and the track it carries ("<peer id>:<publisher's mid>"). */
static void sfu_offer_to_subscriber(sfu_host *host, int index, vrs_span data, vrs_span jsep) {
    sfu_peer *peer = &host->peers[index];
    vrs_json_writer w;
    vrs_json_iterator it;
    vrs_span stream, sdp;
    if (!sfu_find(jsep, "sdp", &sdp) || !sfu_is_string(sdp)) return;
    sfu_custom_begin(host, &w, "sdpOffer", 1);
    vrs_json_key(&w, "sdp");
    vrs_json_raw(&w, sdp.ptr, sdp.length);
    vrs_json_key(&w, "midToTrackId");
    vrs_json_begin_object(&w);
    if (vrs_json_iterate(data.ptr, data.length, "streams", &it) == VRS_OK) {
        while (vrs_json_next(&it, NULL, &stream)) {
            char mid[16], feed_mid[16];
            uint64_t feed;
            int i, active = 1;
            if (!sfu_text(stream, "mid", mid, sizeof mid) || !sfu_id(stream, "feed_id", &feed) ||
                !sfu_text(stream, "feed_mid", feed_mid, sizeof feed_mid))
                continue;
            if (vrs_json_get_bool(stream.ptr, stream.length, "active", &active) == VRS_OK && !active) continue;
            for (i = 0; i < SFU_MAX_PEERS; i++) {
                const sfu_peer *other = &host->peers[i];
                if (!other->used || other->room != peer->room || other->feed != feed || !other->published) continue;
                vrs_json_key(&w, mid);
                sfu_write_track_id(&w, other, feed_mid, 0);
                break;
            }
        }
    }
    vrs_json_end_object(&w);
    sfu_custom_send(host, peer, &w);
}

/* ICE candidates Janus trickles (with full_trickle): to the page as `custom` events. */
static void sfu_trickle_to_page(sfu_host *host, int index, int subscriber, vrs_span candidate) {
    vrs_json_writer w;
    sfu_custom_begin(host, &w, "candidate", subscriber);
    vrs_json_key(&w, "candidate");
    if (sfu_find(candidate, "completed", &candidate)) vrs_json_null(&w);
    else vrs_json_raw(&w, candidate.ptr, candidate.length);
    sfu_custom_send(host, &host->peers[index], &w);
}

/* A plugin event on one of the peer's handles: from a request of ours (with its pending
   entry) or of Janus's own accord (pending NULL). */
static void sfu_plugin_event(sfu_host *host, int index, int subscriber, vrs_span message, sfu_pending *pending) {
    sfu_peer *peer = &host->peers[index];
    vrs_span data, jsep, value;
    int has_jsep = sfu_find(message, "jsep", &jsep);
    if (!sfu_find(message, "plugindata.data", &data) || !sfu_find(data, "videoroom", &value)) return;
    if (sfu_find(data, "error", &value)) {
        char reason[256];
        sfu_error_text(message, reason, sizeof reason);
        if (pending) sfu_peer_request_failed(host, pending, reason);
        else sfu_send_error(host, peer, reason);
        return;
    }
    if (!subscriber) {
        if (sfu_is(data, "videoroom", "joined") && pending && pending->kind == SFU_JOIN_PUBLISHER) {
            if (!sfu_id(data, "id", &peer->feed)) {
                sfu_peer_request_failed(host, pending, "no publisher id in Janus's answer");
                return;
            }
            sfu_peer_accepted(host, index);
        } else if (has_jsep && pending && pending->kind == SFU_PUBLISH) {
            vrs_json_writer w;
            vrs_span sdp;
            if (!sfu_find(jsep, "sdp", &sdp) || !sfu_is_string(sdp)) return;
            sfu_custom_begin(host, &w, "sdpAnswer", 0);
            vrs_json_key(&w, "sdp");
            vrs_json_raw(&w, sdp.ptr, sdp.length);
            sfu_custom_send(host, peer, &w);
            /* The feed can be subscribed to once its connection is up ("webrtcup"). */
            if (sfu_find(data, "streams", &value)) sfu_read_tracks(peer, value);
        }
        return; /* "publishers", "leaving", "unpublished": this logic keeps the feeds itself */
    }
    if (has_jsep) {
        if (sfu_is(jsep, "type", "offer")) {
            peer->subscriber_state = SFU_SUB_BUSY; /* until the page answers and Janus starts */
            sfu_offer_to_subscriber(host, index, data, jsep);
        }
        return;
    }
    if (sfu_find(data, "started", &value) || sfu_is(data, "videoroom", "updated")) {
        peer->subscriber_state = SFU_SUB_READY;
        if (peer->subscriptions_stale) sfu_update_subscriptions(host, index);
    }
}

/* The peer's feed starts (its publisher connection is up: Janus now lets others subscribe
   to it) or stops (the connection hung up: Janus takes it out of every subscription). */
static void sfu_peer_publishes(sfu_host *host, int index, int publishing) {
    sfu_peer *peer = &host->peers[index];
    if (peer->published == publishing || peer->state != SFU_PEER_JOINED) return;
    if (!publishing) sfu_announce_tracks(host, index, 0);
    peer->published = publishing;
    if (publishing) sfu_announce_tracks(host, index, 1);
    sfu_room_feeds_changed(host, peer->room);
}

/* Finds which peer owns a Janus handle (the sender of an event). */
static int sfu_handle_owner(sfu_host *host, uint64_t handle, int *subscriber) {
    int i;
    for (i = 0; handle && i < SFU_MAX_PEERS; i++) {
        const sfu_peer *p = &host->peers[i];
        if (!p->used) continue;
        if (p->publisher == handle) { *subscriber = 0; return i; }
        if (p->subscriber == handle) { *subscriber = 1; return i; }
    }
    return -1;
}

static void sfu_control_ready(sfu_host *host) {
    int i;
    host->control_ready = 1;
    sfu_logf(host, "connected to Janus");
    for (i = 0; i < SFU_MAX_PEERS; i++)
        if (host->peers[i].used && host->peers[i].state == SFU_PEER_WAITING) sfu_start_peer(host, i);
}

/* The answer to one of our requests: "success", "error" or "ack". */
static void sfu_answer(sfu_host *host, sfu_pending *entry, vrs_span message, const char *janus) {
    sfu_pending request = *entry, *pending = &request; /* the entry is free for new requests */
    sfu_peer *peer = sfu_pending_peer(host, pending);
    uint64_t id = 0;
    int is_error = strcmp(janus, "error") == 0;
    if (strcmp(janus, "ack") == 0) {
        /* Requests to the plugin answer later as an event; the others are done. */
        entry->acked = 1;
        if (entry->kind == SFU_TRICKLE || entry->kind == SFU_KEEPALIVE) entry->used = 0;
        return;
    }
    entry->used = 0;
    sfu_id(message, "data.id", &id);
    switch (pending->kind) {
    case SFU_CREATE_CONTROL_SESSION:
        if (is_error || !id) { sfu_connection_lost(host, "Janus refused to create a session"); return; }
        host->control_session = id;
        host->control_keepalive_at = sfu_now(host) + SFU_KEEPALIVE_MS;
        sfu_simple_request(host, SFU_ATTACH_CONTROL, -1, "attach", id);
        return;
    case SFU_ATTACH_CONTROL:
        if (is_error || !id) { sfu_connection_lost(host, "Janus has no VideoRoom plugin"); return; }
        host->control_handle = id;
        sfu_control_ready(host);
        return;
    case SFU_CREATE_ROOM: {
        sfu_room *room = &host->rooms[pending->room];
        int alive = room->used && room->room.id == pending->room_handle.id;
        uint64_t janus_room = 0;
        if (!is_error) sfu_id(message, "plugindata.data.room", &janus_room);
        if (!alive) {
            /* Our room went while Janus made it: it goes too. */
            if (janus_room) sfu_destroy_janus_room(host, janus_room);
            return;
        }
        if (!janus_room) {
            char reason[256], text[300];
            int i;
            sfu_error_text(message, reason, sizeof reason);
            snprintf(text, sizeof text, "media server: cannot create the room: %s", reason);
            room->state = SFU_ROOM_NONE;
            for (i = 0; i < SFU_MAX_PEERS; i++) {
                sfu_peer *p = &host->peers[i];
                if (p->used && p->room == pending->room && p->state == SFU_PEER_WAITING) {
                    p->state = SFU_PEER_IDLE;
                    sfu_send_error(host, p, text);
                }
            }
            return;
        }
        room->janus_room = janus_room;
        room->state = SFU_ROOM_READY;
        {
            int i;
            for (i = 0; i < SFU_MAX_PEERS; i++)
                if (host->peers[i].used && host->peers[i].room == pending->room && host->peers[i].state == SFU_PEER_WAITING)
                    sfu_start_peer(host, i);
        }
        return;
    }
    case SFU_CREATE_SESSION:
        if (!peer) {
            if (id) sfu_destroy_session(host, id); /* the peer left meanwhile */
            return;
        }
        if (is_error || !id) break;
        peer->session = id;
        peer->keepalive_at = sfu_now(host) + SFU_KEEPALIVE_MS;
        sfu_attach(host, SFU_ATTACH_PUBLISHER, pending->peer);
        return;
    case SFU_ATTACH_PUBLISHER:
    case SFU_ATTACH_SUBSCRIBER:
        if (!peer) return; /* its session is destroyed already, handles and all */
        if (is_error || !id) break;
        if (pending->kind == SFU_ATTACH_PUBLISHER) {
            vrs_json_writer w;
            vrs_span no_sdp = {NULL, 0};
            sfu_pending *join;
            peer->publisher = id;
            join = sfu_plugin_begin(host, &w, SFU_JOIN_PUBLISHER, pending->peer, peer->publisher, "join");
            if (!join) return;
            vrs_json_key(&w, "ptype");
            vrs_json_cstring(&w, "publisher");
            vrs_json_key(&w, "room");
            vrs_json_int(&w, (int64_t)host->rooms[peer->room].janus_room);
            vrs_json_key(&w, "display");
            vrs_json_cstring(&w, peer->id);
            sfu_plugin_send(host, join, &w, NULL, no_sdp);
        } else {
            peer->subscriber = id;
            peer->subscriber_state = SFU_SUB_NONE;
            sfu_update_subscriptions(host, pending->peer);
        }
        return;
    case SFU_DESTROY_ROOM:
    case SFU_DESTROY_SESSION:
    case SFU_TRICKLE:
    case SFU_KEEPALIVE:
        if (is_error) {
            char reason[256];
            sfu_error_text(message, reason, sizeof reason);
            sfu_logf(host, "Janus: request %llu failed: %s", (unsigned long long)pending->transaction, reason);
        }
        return;
    default: /* a plugin request answered at once (an error, or "success" for a synchronous one) */
        if (is_error) break;
        if (peer) {
            int subscriber = pending->kind == SFU_JOIN_SUBSCRIBER || pending->kind == SFU_SUBSCRIBE || pending->kind == SFU_START;
            sfu_plugin_event(host, pending->peer, subscriber, message, pending);
        }
        return;
    }
    {
        char reason[256];
        sfu_error_text(message, reason, sizeof reason);
        sfu_peer_request_failed(host, pending, reason);
    }
}

static sfu_pending *sfu_find_pending(sfu_host *host, vrs_span message) {
    char text[32], *end;
    uint64_t transaction;
    int i;
    if (!sfu_text(message, "transaction", text, sizeof text) || !text[0]) return NULL;
    transaction = strtoull(text, &end, 10);
    if (*end) return NULL;
    for (i = 0; i < SFU_MAX_PENDING; i++)
        if (host->pending[i].used && host->pending[i].transaction == transaction) return &host->pending[i];
    return NULL;
}

/* One message from Janus. */
static void sfu_receive(sfu_host *host, const char *text, size_t length) {
    vrs_span message, value;
    char janus[32];
    sfu_pending *pending;
    message.ptr = text;
    message.length = length;
    if (host->verbose) sfu_logf(host, "from Janus: %.*s", (int)(length < 300 ? length : 300), text);
    if (!sfu_text(message, "janus", janus, sizeof janus)) {
        sfu_logf(host, "Janus sent something that is not a Janus message (%zu bytes)", length);
        return;
    }
    pending = sfu_find_pending(host, message);
    if (pending && strcmp(janus, "event") != 0) {
        sfu_answer(host, pending, message, janus);
        return;
    }
    {
        uint64_t sender = 0;
        int subscriber = 0, owner;
        sfu_id(message, "sender", &sender);
        owner = sfu_handle_owner(host, sender, &subscriber);
        if (strcmp(janus, "event") == 0) {
            sfu_pending request;
            if (pending) { /* the answer to a plugin request: its entry is free again */
                request = *pending;
                pending->used = 0;
                pending = &request;
            }
            if (owner >= 0) sfu_plugin_event(host, owner, subscriber, message, pending);
        } else if (strcmp(janus, "trickle") == 0 && owner >= 0 && sfu_find(message, "candidate", &value)) {
            sfu_trickle_to_page(host, owner, subscriber, value);
        } else if (owner >= 0 && !subscriber && strcmp(janus, "webrtcup") == 0) {
            sfu_peer_publishes(host, owner, 1);
        } else if (owner >= 0 && !subscriber && strcmp(janus, "hangup") == 0) {
            sfu_peer_publishes(host, owner, 0);
        } else if (strcmp(janus, "timeout") == 0) {
            sfu_logf(host, "Janus: a session timed out");
        }
        /* webrtcup, media, slowlink, hangup, detached: nothing to do here. */
    }
}

/* ---- what the pages say ----------------------------------------------------------------------- */

static void sfu_page_custom(sfu_host *host, int index, vrs_span event) {
    sfu_peer *peer = &host->peers[index];
    vrs_span data, value;
    int subscriber = sfu_is(event, "data.data.connection", "subscribe");
    if (!sfu_find(event, "data.data", &data) || (!subscriber && !sfu_is(event, "data.data.connection", "publish"))) {
        sfu_send_error(host, peer, "custom events need data.type and data.data.connection (publish or subscribe)");
        return;
    }
    if (peer->state != SFU_PEER_JOINED) {
        sfu_send_error(host, peer, "not in the call: send join first");
        return;
    }
    if (sfu_is(event, "data.type", "sdpOffer") && !subscriber && sfu_find(data, "sdp", &value) && sfu_is_string(value)) {
        sfu_plugin_request(host, SFU_PUBLISH, index, peer->publisher, "publish", "offer", value);
    } else if (sfu_is(event, "data.type", "sdpAnswer") && subscriber && peer->subscriber && sfu_find(data, "sdp", &value) &&
               sfu_is_string(value)) {
        sfu_plugin_request(host, SFU_START, index, peer->subscriber, "start", "answer", value);
    } else if (sfu_is(event, "data.type", "candidate") && sfu_find(data, "candidate", &value) &&
               (subscriber ? peer->subscriber : peer->publisher)) {
        sfu_pending *pending = sfu_new_pending(host, SFU_TRICKLE, index, peer->room);
        vrs_json_writer w;
        if (!pending) return;
        sfu_request_begin(host, &w, pending, "trickle", peer->session, subscriber ? peer->subscriber : peer->publisher);
        vrs_json_key(&w, "candidate");
        if (vrs_json_type_of(value.ptr, value.length) == VRS_JSON_NULL) { /* the end of the page's candidates */
            vrs_json_begin_object(&w);
            vrs_json_key(&w, "completed");
            vrs_json_bool(&w, 1);
            vrs_json_end_object(&w);
        } else {
            vrs_json_raw(&w, value.ptr, value.length);
        }
        sfu_request_send(host, pending, &w);
    } else {
        sfu_send_error(host, peer, "unknown custom event (sdpOffer to publish, sdpAnswer to subscribe, candidate)");
    }
}

static void sfu_on_media_event(vrs_server *server, vrs_room room, vrs_peer handle, const char *text, size_t length,
                               void *user_data) {
    sfu_host *host = (sfu_host *)user_data;
    int index = sfu_peer_index(host, server, handle);
    sfu_peer *peer;
    vrs_span d, event, value;
    (void)room;
    if (index < 0) { /* a peer the host has no room for (its tables are full) */
        if (server == host->server) sfu_send_error_to(host, handle, "the SFU host is full: try again later");
        return;
    }
    peer = &host->peers[index];
    d.ptr = text;
    d.length = length;
    /* D is the event's JSON text in a string (as Membrane's client sends it) or the event. */
    if (sfu_is_string(d)) {
        if (vrs_json_get_string(d.ptr, d.length, NULL, host->received, sizeof host->received, &event.length) != VRS_OK) {
            sfu_send_error(host, peer, "undecodable event");
            return;
        }
        event.ptr = host->received;
    } else {
        event = d;
    }
    if (!sfu_find(event, "type", &value)) {
        sfu_send_error(host, peer, "an event needs a type");
    } else if (sfu_is(event, "type", "join") || sfu_is(event, "type", "updatePeerMetadata")) {
        int join = sfu_is(event, "type", "join");
        if (!sfu_find(event, "data.metadata", &value)) value.ptr = "null", value.length = 4;
        if (value.length > sizeof peer->metadata) { sfu_send_error(host, peer, "metadata too large"); return; }
        if (join && peer->state != SFU_PEER_IDLE) { sfu_send_error(host, peer, "already joined"); return; }
        if (!join && peer->state != SFU_PEER_JOINED) { sfu_send_error(host, peer, "not in the call: send join first"); return; }
        memcpy(peer->metadata, value.ptr, value.length);
        peer->metadata_length = value.length;
        if (join) {
            sfu_start_peer(host, index);
        } else {
            vrs_json_writer w;
            sfu_event_begin(host, &w, "peerUpdated");
            vrs_json_key(&w, "data");
            vrs_json_begin_object(&w);
            vrs_json_key(&w, "peerId");
            vrs_json_cstring(&w, peer->id);
            vrs_json_key(&w, "metadata");
            vrs_json_raw(&w, peer->metadata, peer->metadata_length);
            vrs_json_end_object(&w);
            sfu_send_to_room(host, peer->room, index, &w);
        }
    } else if (sfu_is(event, "type", "leave")) {
        sfu_peer_leaves(host, index);
    } else if (sfu_is(event, "type", "custom")) {
        sfu_page_custom(host, index, event);
    } else {
        sfu_send_error(host, peer, "unknown event type");
    }
}

/* ---- the room logic's other callbacks ---------------------------------------------------------- */

static void sfu_on_room_created(vrs_server *server, vrs_room handle, void *user_data) {
    sfu_host *host = (sfu_host *)user_data;
    int i;
    if (server != host->server) return;
    for (i = 0; i < SFU_MAX_ROOMS; i++) {
        sfu_room *room = &host->rooms[i];
        if (room->used) continue;
        memset(room, 0, sizeof *room);
        room->used = 1;
        room->room = handle;
        vrs_room_set_user_data(server, handle, room);
        return;
    }
    sfu_logf(host, "room table full (%d rooms): room %s has no media", SFU_MAX_ROOMS, vrs_room_name(server, handle));
}

static void sfu_on_room_destroyed(vrs_server *server, vrs_room handle, void *user_data) {
    sfu_host *host = (sfu_host *)user_data;
    int index = sfu_room_index(host, server, handle);
    sfu_room *room;
    if (index < 0) return;
    room = &host->rooms[index];
    if (room->state == SFU_ROOM_READY && host->control_ready) sfu_destroy_janus_room(host, room->janus_room);
    room->used = 0; /* a creation still in flight destroys what it made (SFU_CREATE_ROOM) */
}

static void sfu_on_peer_joined(vrs_server *server, vrs_room room, vrs_peer handle, void *user_data) {
    sfu_host *host = (sfu_host *)user_data;
    int room_index = sfu_room_index(host, server, room), i;
    for (i = 0; room_index >= 0 && i < SFU_MAX_PEERS; i++) {
        sfu_peer *peer = &host->peers[i];
        if (peer->used) continue;
        memset(peer, 0, sizeof *peer);
        peer->used = 1;
        peer->peer = handle;
        peer->room = room_index;
        snprintf(peer->id, sizeof peer->id, "%s", vrs_peer_id(server, handle));
        memcpy(peer->metadata, "null", 4);
        peer->metadata_length = 4;
        vrs_peer_set_user_data(server, handle, peer);
        return;
    }
    sfu_logf(host, "peer table full (%d peers)", SFU_MAX_PEERS); /* its events are answered with an error */
}

static void sfu_on_peer_left(vrs_server *server, vrs_room room, vrs_peer handle, void *user_data) {
    sfu_host *host = (sfu_host *)user_data;
    int index = sfu_peer_index(host, server, handle);
    (void)room;
    if (index < 0) return;
    sfu_peer_leaves(host, index);
    host->peers[index].used = 0;
}

/* ---- the connection to Janus ------------------------------------------------------------------ */

/* Janus went away: every room is closed (its pages get phx_error and rejoin; their joins wait
   until Janus is back) and nothing Janus held is kept. */
static void sfu_connection_lost(sfu_host *host, const char *why) {
    int i;
    if (host->fd < 0) return;
    sfu_logf(host, "lost Janus (%s): closing its rooms, reconnecting every %d ms", why, SFU_RECONNECT_MS);
    close(host->fd);
    host->fd = -1;
    host->control_ready = 0;
    host->control_session = host->control_handle = 0;
    host->outbox_length = 0;
    host->reconnect_at = sfu_now(host) + SFU_RECONNECT_MS;
    memset(host->pending, 0, sizeof host->pending);
    for (i = 0; i < SFU_MAX_PEERS; i++) {
        sfu_peer *peer = &host->peers[i];
        if (!peer->used) continue;
        peer->session = 0; /* gone with Janus */
        sfu_release_peer(host, i);
    }
    for (i = 0; i < SFU_MAX_ROOMS; i++) {
        sfu_room *room = &host->rooms[i];
        if (!room->used) continue;
        room->state = SFU_ROOM_NONE;
        room->janus_room = 0;
        vrs_room_close(host->server, room->room);
    }
}

/* Takes a connected SOCK_SEQPACKET socket to Janus (made non-blocking here) and starts the
   host's own session on it. */
static void sfu_adopt_socket(sfu_host *host, int fd) {
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    host->fd = fd;
    host->outbox_length = 0;
    sfu_simple_request(host, SFU_CREATE_CONTROL_SESSION, -1, "create", 0);
}

static void sfu_connect(sfu_host *host) {
    struct sockaddr_un address;
    int fd;
    host->reconnect_at = sfu_now(host) + SFU_RECONNECT_MS;
    if (!host->socket_path || strlen(host->socket_path) >= sizeof address.sun_path) return;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path, host->socket_path, strlen(host->socket_path));
    /* A Unix socket connects at once or not at all, so this does not wait. */
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return;
    }
    sfu_adopt_socket(host, fd);
}

/* ---- the host's side ---------------------------------------------------------------------------- */

/* Sets up the logic; hand sfu_room_logic(host) to desc.room_logic, then set host->server. */
static void sfu_init(sfu_host *host, const char *socket_path, int max_publishers) {
    memset(host, 0, sizeof *host);
    host->fd = -1;
    host->socket_path = socket_path;
    host->max_publishers = max_publishers;
}

static vrs_room_logic sfu_room_logic(sfu_host *host) {
    vrs_room_logic logic;
    memset(&logic, 0, sizeof logic);
    logic.on_room_created = sfu_on_room_created;
    logic.on_room_destroyed = sfu_on_room_destroyed;
    logic.on_peer_joined = sfu_on_peer_joined;
    logic.on_peer_left = sfu_on_peer_left;
    logic.on_media_event = sfu_on_media_event;
    logic.user_data = host;
    return logic;
}

/* The descriptor to poll (fd -1 while disconnected: poll ignores it). */
static struct pollfd sfu_poll_fd(const sfu_host *host) {
    struct pollfd p;
    p.fd = host->fd;
    p.events = (short)(POLLIN | (host->outbox_length ? POLLOUT : 0));
    p.revents = 0;
    return p;
}

/* How long the host may wait before sfu_process has timers to run. */
static int sfu_timeout_ms(sfu_host *host) {
    int64_t now = sfu_now(host), next = now + 60000;
    int i;
    if (host->fd < 0 && host->socket_path && host->reconnect_at < next) next = host->reconnect_at;
    if (host->control_ready && host->control_keepalive_at < next) next = host->control_keepalive_at;
    for (i = 0; i < SFU_MAX_PEERS; i++)
        if (host->peers[i].used && host->peers[i].session && host->peers[i].keepalive_at < next) next = host->peers[i].keepalive_at;
    for (i = 0; i < SFU_MAX_PENDING; i++)
        if (host->pending[i].used && host->pending[i].deadline < next) next = host->pending[i].deadline;
    return next <= now ? 0 : (int)(next - now);
}

static void sfu_run_timers(sfu_host *host) {
    int64_t now = sfu_now(host);
    int i;
    if (host->fd < 0) {
        if (host->socket_path && now >= host->reconnect_at) sfu_connect(host);
        return;
    }
    for (i = 0; i < SFU_MAX_PENDING && host->fd >= 0; i++) {
        sfu_pending *pending = &host->pending[i];
        if (!pending->used || now < pending->deadline) continue;
        if (pending->peer >= 0 && pending->kind != SFU_KEEPALIVE) {
            sfu_pending request = *pending;
            pending->used = 0;
            sfu_peer_request_failed(host, &request, "no answer in time");
        } else {
            sfu_connection_lost(host, "a request to Janus got no answer in time");
        }
    }
    if (host->fd < 0) return;
    if (host->control_ready && now >= host->control_keepalive_at) {
        host->control_keepalive_at = now + SFU_KEEPALIVE_MS;
        sfu_simple_request(host, SFU_KEEPALIVE, -1, "keepalive", host->control_session);
    }
    for (i = 0; i < SFU_MAX_PEERS; i++) {
        sfu_peer *peer = &host->peers[i];
        if (!peer->used || !peer->session || now < peer->keepalive_at) continue;
        peer->keepalive_at = now + SFU_KEEPALIVE_MS;
        sfu_simple_request(host, SFU_KEEPALIVE, -1, "keepalive", peer->session);
    }
}

/* After poll: reads what Janus sent, writes what waits, runs timers. `revents` is the
   pollfd's revents from sfu_poll_fd (0 when only timers are due). */
static void sfu_process(sfu_host *host, short revents) {
    if (host->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR))) {
        int packets;
        for (packets = 0; packets < 64 && host->fd >= 0; packets++) {
            ssize_t got = recv(host->fd, host->received, sizeof host->received, MSG_DONTWAIT | MSG_TRUNC);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            if (got <= 0) {
                sfu_connection_lost(host, got == 0 ? "the socket was closed" : strerror(errno));
                break;
            }
            if ((size_t)got > sizeof host->received) {
                sfu_logf(host, "dropped a Janus message of %zd bytes (more than %d)", got, SFU_MAX_MESSAGE);
                continue;
            }
            sfu_receive(host, host->received, (size_t)got);
        }
    }
    if (host->fd >= 0 && host->outbox_length) sfu_flush(host);
    sfu_run_timers(host);
}

#endif /* SFU_LOGIC_H */
