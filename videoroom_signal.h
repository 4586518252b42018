/* videoroom_signal.h - a WebRTC video-room signaling server in one C header.

   It speaks the Phoenix channel protocol over WebSocket, so browsers running the official
   Phoenix JavaScript client (npm `phoenix`) join rooms on it and set up calls. Underneath is a
   complete RFC 6455 WebSocket server driven by one step function that the host calls from its
   own loop: one thread (other threads wake it with vrs_wake), poll(), no allocation after
   start-up, libc only (and Winsock 2 on Windows).

   USING IT
   --------
   Do this in *one* C or C++ file, before any other include:

       #define VRS_IMPLEMENTATION
       #include "videoroom_signal.h"

   Every other file includes the header without the define. (Or compile videoroom_signal.c,
   which does exactly that, like any other source file.)

   The implementation needs POSIX.1-2008. When the header is the first include of the
   implementing file it asks for that itself; otherwise compile with -D_POSIX_C_SOURCE=200809L
   (or use gnu99/gnu11). The header is C99, and C++11 or later (it uses long long and
   <stdint.h>); both compile warning-free at -Wall -Wextra -Wpedantic.

   On Windows (Vista or later; MSVC or MinGW-w64) it needs Winsock 2 and nothing else: link
   ws2_32 (sockets) and advapi32 (RtlGenRandom, for peer ids; both toolchains link it by
   default), e.g.
       x86_64-w64-mingw32-gcc -std=c99 -O2 server.c -o server.exe -static-libgcc -lws2_32
       cl /O2 server.c ws2_32.lib advapi32.lib    (MSVC also finds both through #pragma comment)
   The header includes <winsock2.h> (so include it before any <windows.h> of your own, or
   define WIN32_LEAN_AND_MEAN first) and sets _WIN32_WINNT to 0x0600 when it is not defined.
   vrs_create takes a Winsock reference (WSAStartup) and vrs_destroy hands it back
   (WSACleanup); a host that keeps sockets of its own past vrs_destroy calls WSAStartup
   itself, as every Windows program using sockets does. Sockets are polled with WSAPoll,
   written with WSASend, and Winsock's errors lead to the same results and log items as
   POSIX errno values do; Windows raises no SIGPIPE. Peer ids come from RtlGenRandom, timers
   from QueryPerformanceCounter.

   A COMPLETE EXAMPLE: A VIDEO-ROOM SERVER
   ---------------------------------------
   (This exact code is compiled by the project's tests.)

       #define VRS_IMPLEMENTATION
       #include "videoroom_signal.h"

       int main(void) {
           vrs_desc desc = VRS_ZERO_INIT; // 127.0.0.1:4000, the relay room logic
           vrs_server *server = NULL;
           if (vrs_create(&desc, &server) != VRS_OK) return 1;
           for (;;) vrs_step(server, 1000);
       }

   A browser page then talks to it with the Phoenix client:

       const socket = new Socket("ws://127.0.0.1:4000/socket");
       socket.connect();
       const room = socket.channel("room:lobby");
       room.on("mediaEvent", ({data}) => console.log(JSON.parse(data)));
       room.join().receive("ok", () =>
           room.push("mediaEvent", {data: JSON.stringify({type: "join", data: {metadata: {}}})}));

   A game loop calls vrs_step(server, 0) once a frame instead: it never waits.

   Plain WebSockets work too: set desc.on_message (and desc.on_open, desc.on_close) and every
   path but the Phoenix socket's is a WebSocket endpoint; desc.disable_phoenix makes every
   path one. examples/echo_server.c echoes every message that way.

   CONCEPTS
   --------
   - vrs_desc describes the server. Zero-initialise it and set what you need: every field left
     at 0 takes the default written beside it. `vrs_desc desc = VRS_ZERO_INIT;` does that
     warning-free in C ({0}) and in C++ ({}); so does memset(&desc, 0, sizeof desc).
   - All memory is reserved at vrs_create, from a block you pass (desc.memory, sized by
     vrs_memory_size) or from desc.allocator (default malloc/free). Nothing is allocated
     afterwards: every table has a fixed capacity, and a full table is an answer (HTTP 503, a
     close code, an error result), never a crash.
   - Connections, rooms and peers are handles (vrs_conn, vrs_room, vrs_peer): 64 bits holding a
     slot index and the slot's generation, which goes up by one for every new owner of the
     slot. A handle kept after its owner went is detected as stale (VRS_ERROR_INVALID_CONNECTION,
     or an empty answer) and never reaches a later owner of the slot: the generation has 43
     bits, 2^43 (8.8 trillion) owners of one slot, 102 days at one new owner every microsecond
     (a connection, or a join and a leave, costs more than that); a slot whose generation runs
     out is retired, never handed out again, instead of wrapping. Nothing the server keeps for
     an owner, cached or not, outlives it into the slot's next owner.
   - Events arrive as callbacks from inside vrs_step (or vrs_process). Calls that end peers or
     rooms tell the room logic at once, from inside the call: vrs_peer_close and vrs_room_close
     (on_peer_left, then on_room_destroyed when a room is left empty). vrs_destroy ends
     everything the same way: on_peer_left for every peer, on_room_destroyed for every room and
     on_close (1001) for every open connection, so that a host can free what its user pointers
     hold where it always does; nothing it sends from there reaches anyone. Inside a callback
     the host may call any vrs_ function except vrs_step/vrs_process/vrs_destroy.
   - The user pointer rule: every callback gets the user_data of the struct that holds it:
     desc.user_data for desc's own callbacks (on_upgrade, on_open, on_message, on_close,
     on_http, on_connect, on_wake), desc.room_logic.user_data for the room logic's, desc.logger.user_data
     for the logger and desc.allocator.user_data for the allocator. Connections, rooms and
     peers carry a user pointer each besides (vrs_conn_user_data, vrs_room_user_data,
     vrs_peer_user_data).
   - Errors are data: functions return vrs_result (vrs_result_string names it) and log lines
     carry a stable vrs_log_item id, so a host can react to, and tests can assert on, the id.

   THREADS AND SIGNALS
   -------------------
   The server lives on one thread, the one that calls vrs_step (or vrs_process): every vrs_
   function but one is called there, and every callback runs there. The exception is
   vrs_wake(server), which any thread and any signal handler may call, at any rate, from the
   return of vrs_create until vrs_destroy: it writes to a descriptor the server waits on
   (async-signal-safe, never blocks, leaves errno as it was, changes nothing in the server's
   memory), so it needs no lock. A step that is waiting returns at once; a wake that comes
   while a step runs makes the next one return without waiting. Wakes that arrive before the
   server gets to them coalesce into one call of desc.on_wake(server, desc.user_data) inside
   the step that sees them, on the server's thread, never concurrently with another callback. The header has no threads and no
   locks of its own: a host hands data over through its own queue and lock (the producer pushes
   and calls vrs_wake; on_wake empties the queue and sends with vrs_peer_send,
   vrs_room_broadcast, vrs_send, ...). Before vrs_destroy the host makes sure no thread or
   signal handler can still call vrs_wake (it joins its threads and restores the handler).
   examples/ticker.c feeds a room from a 60 Hz thread that way.

   THE WEBSOCKET SERVER
   --------------------
   - HTTP/1.1 upgrade (RFC 6455 section 4): a request head larger than max_request_size gets
     431, a malformed one 400. A request that asks for an upgrade (it has an Upgrade,
     Sec-WebSocket-Key or Sec-WebSocket-Version header, or "upgrade" in Connection) must be a
     GET over HTTP/1.1 with Host, "websocket" in Upgrade, "upgrade" in Connection and a
     Sec-WebSocket-Key of 16 bytes in base64, or it gets 400; a Sec-WebSocket-Version other
     than 13 gets 426 with "Sec-WebSocket-Version: 13". Then desc.on_upgrade may refuse (any
     4xx/5xx, or a response of its own sent with vrs_http_respond) or pick a subprotocol the
     client offered. Other requests go to desc.on_http, which
     answers with vrs_http_respond; without it they get 404. Every error response carries
     "Connection: close" and a short body, and the connection closes once it is sent.
   - Frames: client frames must be masked; reserved bits, unknown opcodes, control frames over
     125 bytes or fragmented, a continuation with no message started, a new message inside a
     fragmented one, and non-minimal length encodings all close with 1002. A message whose
     length passes max_message_size closes with 1009 as soon as a frame header shows it. Text
     is validated as UTF-8 as the bytes arrive, across fragments, and closes with 1007 at the
     first bad byte. Pings are answered with pongs carrying the same payload; unsolicited pongs
     are ignored. A close frame's code is checked (1000-1003, 1007-1014 and 3000-4999 are
     valid; others close with 1002), its reason must be UTF-8 (else 1007), and the code is
     echoed before the server closes the TCP connection.
   - Writes go through a queue per connection, flushed at the end of each step with one system
     call per connection where possible; POLLOUT is asked for only while bytes are pending.
   - Flow control: no client that keeps reading is closed or loses a message. When a client's
     queue passes send_queue_size, the server stops reading the connection whose message is
     being handled (in the relay, the peers of its rooms; with the host's logic, whoever's
     message led to the push) until that queue drains under half of it, and TCP slows the
     sender down. The queue passes the mark by what was in flight, about one message of each
     sender. With less than half of the shared pool free the mark falls with it, and with less
     than a quarter free every sender waits before its next message until three eighths are
     free, so that the pool does not run dry. A paused connection is not idle while bytes it
     sent wait.
   - A slow consumer makes no progress: bytes have waited for it and it took none of them for
     slow_consumer_timeout_ms. The default, 20 s, outlasts the stalls of a browser on a bad
     network (an outage of about 10 s, then TCP's backed-off retransmission) and is shorter
     than the 30 s after which phoenix.js gives up on an unanswered heartbeat, so that senders
     paused behind a stalled client have theirs answered in time. It is closed with 1013
     (VRS_LOG_SLOW_CONSUMER), alone, and whoever waited for it resumes at once; so is a client
     whose queue reaches the hard cap, 2 * send_queue_size + (max_peers_per_room + 1) *
     (max_message_size + 1024) bytes, which flow control keeps reading clients far from. Should
     the pool run dry all the same, the client with the most bytes queued is dropped.
   - Pushes that no client's message led to (from a timer, desc.on_wake or the host's own loop)
     cannot pause anyone: they queue past send_queue_size, up to the hard cap. vrs_send,
     vrs_peer_send, the broadcasts and vrs_peer_push then return VRS_ERROR_SLOW_CONSUMER or
     VRS_ERROR_POOL_EXHAUSTED when that client had to be closed (it alone; the others got their
     copy), VRS_ERROR_NOT_OPEN for a client already closing, VRS_ERROR_TOO_LARGE for a message
     over the hard cap. A host that pushes much on its own should pace itself.
   - At max_connections, a new client gets 503 and then the close from one of VRS_REJECT_SLOTS
     slots kept for that: its request is read and discarded and our side of TCP closed, so the
     client is never reset, and the slot waits at most 1 s (or close_timeout) for the client's
     end. While every such slot is busy, new clients wait in the listen backlog: a flood of
     them pins neither descriptors nor memory, and takes no slot a real client needs.
   - Timers: handshake_timeout (a client that never finishes its request gets 408), idle_timeout
     (no bytes from the client for that long: close 1001), slow_consumer_timeout (above),
     close_timeout (how long to wait for the peer's close frame and for the TCP connection to
     end after ours).

   THE PHOENIX SOCKET
   ------------------
   The socket is mounted at desc.socket_path ("/socket"): clients connect to
   /socket/websocket?vsn=2.0.0, as phoenix.js does. docs/PROTOCOL.md in the repository is the
   specification, with examples of every message; in short:
   - Handshake checks, in Phoenix's order: GET, then the Origin against desc.allowed_origins
     (403), then vsn (absent or 1.0.x: V1 objects; 2.0.x: V2 arrays and binary frames; other:
     403), then desc.on_connect (nonzero: 403; it sees the query parameters and the Phoenix 1.8
     auth token sent as "base64url.bearer.phx.<token>" in Sec-WebSocket-Protocol), then the RFC
     6455 checks. The server answers the "phoenix" subprotocol when it is offered. A hook that
     answers with vrs_http_respond refuses the socket with that response instead of the 403.
   - A socket whose URL names a room (`room` query parameter, as phoenix.js sends
     `new Socket("/socket", {params: {room}})`) may join only "room:<that id>": a join for
     another room gets the error "this socket may join only the room named in its URL", so that a
     balancer hashing the parameter never splits a room across servers. A `room` that is empty,
     malformed or longer than max_room_id_size refuses the socket (403). Sockets without it join
     any room. (The socket keeps the id's length and a 32-bit hash: this keeps rooms together,
     it is no access control, since a client chooses its own URL.)
   - Heartbeats are answered; a join on "room:<id>" finds or creates room <id>, gives the
     channel a fresh peer id (a UUID v4 from /dev/urandom, or RtlGenRandom on Windows) and
     replies ok, or an error:
     "failed to start room" (room table full), "room is full", "invalid room id" (empty, longer
     than max_room_id_size bytes, or holding a control character, U+0000-U+001F or U+007F, so
     that "room:a\u0000b" never passes for room "a" in vrs_room_name or a log line), "too many
     channels joined" (max_channels_per_socket), "server is full" (max_channels). Other topics
     get "unmatched topic". Every error reply's response is {"reason": TEXT}. A duplicate join
     ends the old channel (phx_close after the new join's reply); phx_leave replies ok then
     sends phx_close; a message with a stale join_ref is dropped. A push "mediaEvent"
     {"data": D} goes to the room logic and gets no reply (phoenix.js's
     push().receive("ok") never fires for it: answers come as pushes); other events, or a
     mediaEvent without "data", get an error reply and the channel stays.
   - An undecodable message (bad JSON, wrong shape, bad binary kind) closes the socket with
     1007. When a socket closes, each of its channels leaves its room; nothing is sent.

   ROOMS AND THE ROOM LOGIC
   ------------------------
   desc.room_logic is the seam where the original server plugs in its SFU engine: callbacks
   when a room is created and destroyed, when a peer (a joined channel) joins and leaves, and
   when a peer's media event arrives (D as JSON text). The logic answers with vrs_peer_send
   (one peer), vrs_room_broadcast (all), vrs_room_broadcast_except (all but one), each sending
   the push "mediaEvent" {"data": D}; vrs_peer_close ends one peer's channel (phx_close: the
   client does not rejoin, its socket stays); vrs_room_close ends a room (its channels get
   phx_error and phoenix.js rejoins); vrs_rooms lists the rooms. Rooms and peers are vrs_room
   / vrs_peer handles (stale ones are refused) with a user pointer each. A room is destroyed
   when its last peer goes. The vrs_json_* functions read D and write answers with the
   server's own JSON reader and writer (strict, escaping, no allocation): see "JSON for room
   logic" below.

   With no room-logic callbacks the relay logic runs (docs/RELAY.md, with every event in both
   directions and examples): D is a JSON string holding an event E (or E itself).
   {"type":"join","data":{"metadata":M}} answers
   peerAccepted (the peers already in, in join order) and tells the others peerJoined;
   "leave" → peerLeft; "updatePeerMetadata" → peerUpdated; {"type":"custom","to":ID,"data":X}
   → {"type":"custom","from":ID,"data":X} to one peer, or to every other peer without "to".
   Anything else gets {"type":"error","data":{"message":...}} to its sender alone. A peer can
   only ever reach peers of its own room. Browsers use it to set up peer-to-peer calls.

   BEHIND A LOAD BALANCER
   ----------------------
   Rooms are independent, so several servers scale out and survive one another's loss when a
   balancer sends every peer of a room to the same server: HAProxy with `balance url_param
   room` and `hash-type consistent` (examples/cluster). vrs_get_stats gives the counters a
   metrics endpoint needs (examples/demo_server.c serves /metrics in Prometheus's format and
   /health). For a restart, vrs_drain makes every new socket an HTTP 503 while on_http still
   answers (a health check says 503, the balancer stops sending clients), then
   vrs_close_all(server, 1012, "service restart") sends every client away; phoenix.js
   reconnects and the balancer takes it to the server that now owns its room.

   MEMORY
   ------
   vrs_memory_size(desc) says how much a description reserves; every size in that plan is
   computed with overflow checks, and a description whose plan would pass SIZE_MAX (on a 32-bit
   system, max_message_size near INT_MAX, say) gives 0 there and is refused by vrs_create
   (VRS_ERROR_INVALID_ARGUMENT), with the log line VRS_LOG_MEMORY_PLAN_TOO_LARGE. Per connection slot that is one
   vrs__conn (a few hundred bytes) and one pollfd, and per channel and room slot a few hundred
   bytes more; queued and partially received bytes live in
   a shared pool of VRS_BLOCK_SIZE blocks (buffer_pool_size bytes), taken only while bytes wait
   and handed back LIFO, so an idle connection holds no buffer at all. At most half of the
   pool holds received bytes (bytes read from a connection that was then paused among them),
   so clients sending large messages cannot starve the sending side.
   The server adds one read buffer, one buffer of max_message_size to assemble fragmented
   messages and, for the Phoenix socket, the buffers that build outgoing messages (sized for
   the relay's largest event: max_peers_per_room peers with max_metadata_size metadata each).

   COMPILE-TIME OPTIONS (define before including the implementation)
   --------------------
   VRS_STATIC                    make every API function static to the implementing file
   VRS_ASSERT(c)                 default assert(c)
   VRS_MEMCPY(d,s,n), VRS_MEMSET(d,v,n)   default memcpy/memset
   VRS_MALLOC(n), VRS_FREE(p)    the default allocator; define both or neither
   VRS_DEFAULT_LOG(level, item, message)  where log lines go when desc.logger.func is NULL;
                                 default: warnings and errors to stderr
   VRS_BLOCK_SIZE                bytes in one pool block, default 4096
   VRS_USE_EPOLL                 Linux: wait with epoll instead of poll(), so that a step costs
                                 what the ready connections cost, not what all of them do
                                 (poll() looks at every descriptor on every step). The demo
                                 server is built with it.
   VRS_NO_SIMD                   scan bytes in portable C only; by default, where the compiler
                                 targets SSE2 (every x86-64), payloads are unmasked, checked as
                                 UTF-8 and scanned as JSON sixteen bytes at a time
   VRS_NO_EVENTFD                Linux: vrs_wake writes to a pipe, as on other systems, instead
                                 of an eventfd (the tests' poll() builds use it)

   LIMITS
   ------
   POSIX systems (Linux, the BSDs, macOS) and Windows Vista or later (Winsock 2; 64-bit builds
   are tested, under Wine). 32- and 64-bit, little- and big-endian: the project's tests also
   run on Linux on 32-bit ARM (armhf) and big-endian s390x under qemu-user. VRS_USE_EPOLL is
   Linux only. At most 1,048,575 connections and 2,097,151 channels and rooms (the slots a
   handle can name; the defaults stay within them); request heads of at most VRS_MAX_HEADERS
   (64) header lines; response heads (status line and headers) of at most 1,024 bytes.

   LICENCE: MIT, at the end of this file.
*/
#ifndef VIDEOROOM_SIGNAL_H
#define VIDEOROOM_SIGNAL_H

#if defined(VRS_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(__APPLE__) && !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>
/* vrs_pollfd: what the host's own loop polls (vrs_poll_fds, vrs_process) */
#ifdef _WIN32
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0600 /* WSAPoll and WSAPOLLFD arrived with Windows Vista */
#elif _WIN32_WINNT < 0x0600
#error "videoroom_signal needs _WIN32_WINNT 0x0600 (Windows Vista) or later, for WSAPoll"
#endif
#include <winsock2.h>
typedef WSAPOLLFD vrs_pollfd; /* poll with WSAPoll */
#else
#include <poll.h>
typedef struct pollfd vrs_pollfd; /* poll with poll() */
#endif

#ifndef VRS_API
#ifdef VRS_STATIC
#define VRS_API static
#else
#define VRS_API extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
   Results and log items
   ------------------------------------------------------------------------------------------- */

typedef enum vrs_result {
    VRS_OK = 0,
    VRS_ERROR_INVALID_ARGUMENT,   /* a description or call argument out of range */
    VRS_ERROR_OUT_OF_MEMORY,      /* vrs_create: the allocator or desc.memory was too small */
    VRS_ERROR_ADDRESS,            /* vrs_create: the host/port cannot be resolved or bound */
    VRS_ERROR_INVALID_CONNECTION, /* the handle is stale or was never valid */
    VRS_ERROR_NOT_OPEN,           /* the connection is not (or no longer) an open WebSocket */
    VRS_ERROR_TOO_LARGE,          /* the message can never fit the send queue or the frame rules */
    VRS_ERROR_SLOW_CONSUMER,      /* the client takes no bytes (or its queue is at the hard cap);
                                     it is being closed */
    VRS_ERROR_POOL_EXHAUSTED,     /* the shared buffer pool is empty; the client is being closed */
    VRS_ERROR_SYSTEM,             /* a system call failed (the log line tells why) */
    VRS_ERROR_INVALID_JSON,       /* the text is not one valid JSON value (RFC 8259) */
    VRS_ERROR_NOT_FOUND,          /* vrs_json_*: no member or element at that path */
    VRS_ERROR_WRONG_TYPE,         /* a JSON value of another type than the call needs */
    VRS_ERROR_BUFFER_TOO_SMALL,   /* the result does not fit the caller's buffer */
    VRS_ERROR_RESERVED_EVENT      /* vrs_peer_push: the protocol keeps that event name for itself */
} vrs_result;

VRS_API const char *vrs_result_string(vrs_result result);

typedef enum vrs_log_level {
    VRS_LOG_LEVEL_ERROR = 0,
    VRS_LOG_LEVEL_WARNING = 1,
    VRS_LOG_LEVEL_INFO = 2
} vrs_log_level;

/* Every log line the library writes, with a stable id. X(name, level, description). */
#define VRS_LOG_ITEMS(X)                                                                          \
    X(LISTENING, INFO, "listening")                                                               \
    X(LISTEN_FAILED, ERROR, "cannot listen on the configured host and port")                      \
    X(ACCEPT_FAILED, WARNING, "accept failed")                                                    \
    X(DESCRIPTOR_LIMIT, WARNING, "out of file descriptors: accepting paused for 100 ms")          \
    X(CONNECTIONS_FULL, WARNING, "connection table full: new client answered 503")                \
    X(CONNECTION_OPENED, INFO, "WebSocket connection opened")                                     \
    X(CONNECTION_CLOSED, INFO, "WebSocket connection closed")                                     \
    X(REQUEST_TOO_LARGE, INFO, "request head too large: answered 431")                            \
    X(BAD_REQUEST, INFO, "malformed request: answered 400")                                       \
    X(BAD_UPGRADE, INFO, "bad WebSocket upgrade request: answered 400")                           \
    X(UNSUPPORTED_VERSION, INFO, "unsupported WebSocket version: answered 426")                   \
    X(UPGRADE_REFUSED, INFO, "the host refused the upgrade")                                      \
    X(SUBPROTOCOL_NOT_OFFERED, WARNING, "the host chose a subprotocol the client did not offer")  \
    X(HANDSHAKE_TIMEOUT, INFO, "handshake timeout: answered 408")                                 \
    X(IDLE_TIMEOUT, INFO, "idle timeout: closing with 1001")                                      \
    X(CLOSE_TIMEOUT, INFO, "the peer did not finish the close in time: connection dropped")       \
    X(PROTOCOL_ERROR, INFO, "WebSocket protocol violation: closing with 1002")                    \
    X(INVALID_UTF8, INFO, "invalid UTF-8: closing with 1007")                                     \
    X(MESSAGE_TOO_LARGE, INFO, "message larger than max_message_size: closing with 1009")         \
    X(SLOW_CONSUMER, WARNING, "no progress, or the send queue at its cap: closing with 1013")     \
    X(POOL_EXHAUSTED, WARNING, "buffer pool exhausted: closing the client with 1013")             \
    X(CONNECTION_RESET, INFO, "the client's connection ended without a close frame")              \
    X(SYSTEM_ERROR, ERROR, "a system call failed")                                               \
    X(ORIGIN_REFUSED, INFO, "Origin not allowed: socket refused with 403")                        \
    X(VSN_REFUSED, INFO, "unsupported Phoenix serializer version: socket refused with 403")       \
    X(CONNECT_REFUSED, INFO, "the connect hook refused the socket: 403")                         \
    X(ROOM_PARAM_REFUSED, INFO, "room parameter not a valid room id: socket refused with 403")  \
    X(DRAINING_REFUSED, INFO, "draining: new socket answered 503")                               \
    X(BAD_MESSAGE, INFO, "undecodable Phoenix message: closing with 1007")                       \
    X(PEER_JOINED, INFO, "peer joined a room")                                                    \
    X(PEER_LEFT, INFO, "peer left its room")                                                      \
    X(ROOM_TABLE_FULL, WARNING, "room table full: join answered \"failed to start room\"")        \
    X(CHANNEL_TABLE_FULL, WARNING, "channel table full: join answered \"server is full\"")        \
    X(MEMORY_PLAN_TOO_LARGE, ERROR, "the description needs more memory than size_t can count")    \
    X(RESPONSE_HEAD_TOO_LARGE, WARNING, "response head over 1024 bytes: not sent")                 \
    X(INVALID_DESCRIPTION, ERROR, "vrs_create: a description field is out of range")             \
    X(OUT_OF_MEMORY, ERROR, "vrs_create: not enough memory for the description")

typedef enum vrs_log_item {
#define VRS__LOG_ENUM(name, level, text) VRS_LOG_##name,
    VRS_LOG_ITEMS(VRS__LOG_ENUM)
#undef VRS__LOG_ENUM
    VRS_LOG_ITEM_COUNT
} vrs_log_item;

VRS_API const char *vrs_log_item_name(vrs_log_item item);

/* ---------------------------------------------------------------------------------------------
   Handles and requests
   ------------------------------------------------------------------------------------------- */

typedef struct vrs_server vrs_server;

/* A connection: slot index + 1 in the low 21 bits, the slot's generation in the 43 above (see
   CONCEPTS). 0 is never valid. Compare handles by .id; the layout is not part of the API. */
typedef struct vrs_conn { uint64_t id; } vrs_conn;

typedef enum vrs_message_type {
    VRS_MESSAGE_TEXT = 1,  /* the WebSocket opcodes, so they can be passed on as they are */
    VRS_MESSAGE_BINARY = 2
} vrs_message_type;

/* A span of bytes inside a request or a JSON text; not NUL-terminated. */
typedef struct vrs_span { const char *ptr; size_t length; } vrs_span;

typedef struct vrs_header { vrs_span name, value; } vrs_header;

#define VRS_MAX_HEADERS 64

/* A parsed HTTP request head, valid only during the callback that receives it. */
typedef struct vrs_request {
    vrs_span method;
    vrs_span target;       /* as sent: path and query */
    vrs_span path;         /* target up to '?' (not percent-decoded) */
    vrs_span query;        /* after '?', empty when there is none */
    int minor_version;     /* HTTP/1.<minor_version> */
    int header_count;
    vrs_header headers[VRS_MAX_HEADERS];
    char remote_address[64]; /* "203.0.113.5:51234" or "[2001:db8::1]:51234" */
} vrs_request;

/* The value of the first header with this name (case-insensitive); length 0 when absent. */
VRS_API vrs_span vrs_request_header(const vrs_request *request, const char *name);
/* Copies the percent-decoded value of query parameter `name` into out (NUL-terminated).
   Returns its length; -1 when absent; -2 when longer than capacity - 1 or malformed. */
VRS_API int vrs_request_query(const vrs_request *request, const char *name, char *out,
                              size_t capacity);
/* 1 when the client listed `protocol` in Sec-WebSocket-Protocol. */
VRS_API int vrs_request_offers_subprotocol(const vrs_request *request, const char *protocol);
/* 1 when `span` equals the NUL-terminated `text` exactly. */
VRS_API int vrs_span_equals(vrs_span span, const char *text);

/* What on_upgrade decides. It starts as: accept, no subprotocol. */
typedef struct vrs_upgrade_answer {
    int refuse_status;         /* 0 accepts; an HTTP status (403, say) refuses */
    const char *subprotocol;   /* must be one the client offered (static or long-lived text) */
    void *conn_user_data;      /* stored with the connection: vrs_conn_user_data */
} vrs_upgrade_answer;

/* ---------------------------------------------------------------------------------------------
   Phoenix channels and rooms
   ------------------------------------------------------------------------------------------- */

/* A room and a peer (one joined channel): laid out as vrs_conn. 0 is never valid. */
typedef struct vrs_room { uint64_t id; } vrs_room;
typedef struct vrs_peer { uint64_t id; } vrs_peer;

/* What the connect hook sees of a Phoenix socket connection. */
typedef struct vrs_connect_info {
    const vrs_request *request;   /* vrs_request_query(info->request, "token", ...) reads params */
    vrs_span origin;              /* the Origin header; length 0 when absent */
    const char *remote_address;
    const char *auth_token;       /* Phoenix 1.8 authToken, decoded; NULL when none was sent */
    size_t auth_token_length;
} vrs_connect_info;

/* The room logic: where the original plugs in its SFU engine. Every callback is optional;
   when all are NULL the default relay logic (docs/RELAY.md) runs. Each gets user_data below. */
typedef struct vrs_room_logic {
    void (*on_room_created)(vrs_server *server, vrs_room room, void *user_data);
    void (*on_room_destroyed)(vrs_server *server, vrs_room room, void *user_data);
    void (*on_peer_joined)(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data);
    void (*on_peer_left)(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data);
    /* A client's mediaEvent: `data` is the JSON text of D in {"data": D}, valid during the call. */
    void (*on_media_event)(vrs_server *server, vrs_room room, vrs_peer peer, const char *data,
                           size_t length, void *user_data);
    void *user_data;
} vrs_room_logic;

/* ---------------------------------------------------------------------------------------------
   The description
   ------------------------------------------------------------------------------------------- */

typedef struct vrs_allocator {
    void *(*alloc)(size_t size, void *user_data);
    void (*free)(void *pointer, void *user_data);
    void *user_data;
} vrs_allocator;

typedef struct vrs_logger {
    void (*func)(vrs_log_level level, vrs_log_item item, const char *message, void *user_data);
    void *user_data;
} vrs_logger;

#define VRS_PORT_ANY (-1) /* desc.port: let the system choose; vrs_port() tells which */

/* Zero-initialises a vrs_desc (or any struct of this header) warning-free in C and C++:
   `vrs_desc desc = VRS_ZERO_INIT;` (C's {0} warns in C++ with -Wextra; C++'s {} is not C99). */
#ifdef __cplusplus
#define VRS_ZERO_INIT {}
#else
#define VRS_ZERO_INIT {0}
#endif

typedef struct vrs_desc {
    const char *host;          /* "127.0.0.1"; "::" listens on every address, IPv4 and IPv6 */
    int port;                  /* 4000; VRS_PORT_ANY for an ephemeral port */
    int max_connections;       /* 1024 open connections (at most 1,048,575); one more gets 503 */
    int max_message_size;      /* 65536 bytes in one reassembled message; more closes with 1009 */
    int max_request_size;      /* 8192 bytes of HTTP request head; more gets 431 */
    int send_queue_size;       /* 262144 bytes queued for one client; more pauses the senders
                                  adding to it (THE WEBSOCKET SERVER: flow control) */
    int buffer_pool_size;      /* max_connections * 16 KiB: the shared block pool, in bytes */
    int handshake_timeout_ms;  /* 10000: from accept to a complete request head */
    int idle_timeout_ms;       /* 60000: no bytes from an open client; closes with 1001 */
    int close_timeout_ms;      /* 5000: waiting for the peer's close frame and TCP end */
    int slow_consumer_timeout_ms; /* 20000: bytes waited for a client and it took none of them;
                                     closes it with 1013 (THE WEBSOCKET SERVER: why 20 s) */

    /* A request that asks for a WebSocket upgrade passed every RFC 6455 check. Set
       answer->refuse_status to refuse it, or answer with vrs_http_respond, which refuses it
       the same way with that response; leave the answer as it is to accept. */
    void (*on_upgrade)(vrs_server *server, vrs_conn conn, const vrs_request *request,
                       vrs_upgrade_answer *answer, void *user_data);
    void (*on_open)(vrs_server *server, vrs_conn conn, void *user_data);
    /* One whole, reassembled message; `data` is valid only during the call. */
    void (*on_message)(vrs_server *server, vrs_conn conn, vrs_message_type type,
                       const void *data, size_t length, void *user_data);
    /* Once for every connection that was opened: the close code received, or the one the
       server sent (also when the client then vanished without answering), or 1006 when the
       connection ended with no close frame either way. The handle is stale afterwards. */
    void (*on_close)(vrs_server *server, vrs_conn conn, int code, void *user_data);
    /* A plain HTTP request (not an upgrade). Answer with vrs_http_respond during the call;
       without an answer, or without this hook, the client gets 404. */
    void (*on_http)(vrs_server *server, vrs_conn conn, const vrs_request *request,
                    void *user_data);
    /* Once in each step that found vrs_wake called (however many times) since the last one;
       on the server's thread, like every callback. */
    void (*on_wake)(vrs_server *server, void *user_data);
    void *user_data;

    vrs_allocator allocator;   /* malloc/free through VRS_MALLOC/VRS_FREE */
    void *memory;              /* or a block of vrs_memory_size(desc) bytes the host owns */
    size_t memory_size;
    vrs_logger logger;         /* VRS_DEFAULT_LOG: warnings and errors to stderr */

    /* The Phoenix socket */
    int disable_phoenix;       /* 0: the Phoenix socket serves socket_path; 1: plain WebSockets only */
    const char *socket_path;   /* "/socket": clients connect to /socket/websocket?vsn=2.0.0 */
    const char *const *allowed_origins; /* NULL: any Origin; else exact "scheme://host[:port]" */
    int allowed_origin_count;
    /* Refuse (return nonzero: 403) or accept (0) a Phoenix socket before any channel exists.
       A response sent from here with vrs_http_respond refuses it too, with that response. */
    int (*on_connect)(vrs_server *server, vrs_conn conn, const vrs_connect_info *info,
                      void *user_data);
    int max_channels_per_socket; /* 100, as Phoenix; more: "too many channels joined" */
    int max_channels;          /* max_connections * 2 joined channels in all (at most 2,097,151) */
    int max_rooms;             /* max_connections rooms (at most 2,097,151); more: "failed to
                                  start room" */
    int max_peers_per_room;    /* 32 peer channels in one room; more: "room is full" */
    int max_room_id_size;      /* 64 bytes of room id; more, none, or a control character:
                                  "invalid room id" */
    int max_metadata_size;     /* 1024 bytes of relay peer metadata; more: "metadata too large" */
    vrs_room_logic room_logic; /* all NULL: the relay logic */
} vrs_desc;

/* ---------------------------------------------------------------------------------------------
   Functions
   ------------------------------------------------------------------------------------------- */

/* Bytes vrs_create reserves for this description (its defaults resolved). */
VRS_API size_t vrs_memory_size(const vrs_desc *desc);
/* Reserves memory, binds and listens. On failure *server is NULL and a log line says why:
   VRS_ERROR_INVALID_ARGUMENT (VRS_LOG_INVALID_DESCRIPTION names the field and its range;
   VRS_LOG_MEMORY_PLAN_TOO_LARGE: the sizes pass what size_t counts),
   VRS_ERROR_OUT_OF_MEMORY (VRS_LOG_OUT_OF_MEMORY: desc.memory_size too small, or the
   allocator gave nothing), VRS_ERROR_ADDRESS (VRS_LOG_LISTEN_FAILED), VRS_ERROR_SYSTEM
   (VRS_LOG_SYSTEM_ERROR). */
VRS_API vrs_result vrs_create(const vrs_desc *desc, vrs_server **server);
/* Sends 1001 to every open client, makes one attempt to flush, closes every socket and
   descriptor and frees the memory (when it came from the allocator). Every peer, room and open
   connection ends through its callback first (on_peer_left, on_room_destroyed, on_close): see
   CONCEPTS. No thread or signal handler may call vrs_wake from here on. */
VRS_API void vrs_destroy(vrs_server *server);

/* One round: poll for at most timeout_ms (0: do not wait), then accept, read, parse, dispatch,
   write and run timers. Returns VRS_OK or VRS_ERROR_SYSTEM when poll itself failed. */
VRS_API vrs_result vrs_step(vrs_server *server, int timeout_ms);

/* For a host with its own poll loop: vrs_poll_fds fills `fds` with the descriptors the server
   waits on and the events it wants (returns how many, at most capacity; capacity
   max_connections + VRS_REJECT_SLOTS + 2 always suffices: the listener, the wake-up
   descriptor and the connections). Poll them with at most vrs_timeout_ms() of waiting (-1: no
   timer is due, wait until a descriptor is ready), then hand the same array, in the same order,
   with revents filled, to vrs_process. From the first call on, the descriptors wake the host
   for a connecting client and for vrs_wake. The host may put its own descriptors after the
   server's in the same array and poll them all at once; vrs_process takes the count
   vrs_poll_fds returned or the whole array's (it ignores what follows the server's
   descriptors). Built with VRS_USE_EPOLL, the server waits on one descriptor, its epoll
   instance (which holds the wake-up descriptor too), and vrs_poll_fds gives just that one.
   vrs_pollfd is struct pollfd for poll() (WSAPOLLFD for WSAPoll on Windows). */
#define VRS_REJECT_SLOTS 16
VRS_API int vrs_poll_fds(vrs_server *server, vrs_pollfd *fds, int capacity);
VRS_API int vrs_timeout_ms(vrs_server *server);
VRS_API void vrs_process(vrs_server *server, const vrs_pollfd *fds, int count);

/* From any thread or signal handler (THREADS AND SIGNALS above): ends the wait of the current
   or next step, which then calls desc.on_wake once. Calls coalesce; it never blocks. */
VRS_API void vrs_wake(vrs_server *server);

/* Queue a whole message (one frame) to an open connection. Called while a client's message is
   handled, a send to a congested client pauses that sender; from elsewhere (a timer, on_wake,
   the host's own loop) it pauses nobody (THE WEBSOCKET SERVER says which results to expect). */
VRS_API vrs_result vrs_send(vrs_server *server, vrs_conn conn, vrs_message_type type,
                            const void *data, size_t length);
VRS_API vrs_result vrs_send_text(vrs_server *server, vrs_conn conn, const char *text,
                                 size_t length);
VRS_API vrs_result vrs_send_binary(vrs_server *server, vrs_conn conn, const void *data,
                                   size_t length);
/* A ping with at most 125 bytes of payload; the pong is consumed by the server. */
VRS_API vrs_result vrs_send_ping(vrs_server *server, vrs_conn conn, const void *data,
                                 size_t length);
/* Starts the close handshake with `code` and a reason of at most 123 bytes (may be NULL).
   on_close follows when the client answers, or after close_timeout_ms. */
VRS_API vrs_result vrs_close(vrs_server *server, vrs_conn conn, int code, const char *reason);

/* Answer a plain HTTP request from inside on_http. `extra_headers` is NULL or whole lines,
   each ending in "\r\n". A HEAD request gets the headers alone. The connection closes after
   the response. Inside on_upgrade or on_connect it refuses the upgrade with this response
   (as refuse_status does with its own). A status line and headers longer than 1,024 bytes
   are refused: VRS_ERROR_TOO_LARGE and the log line VRS_LOG_RESPONSE_HEAD_TOO_LARGE, nothing
   sent, and the hook may answer again. */
VRS_API vrs_result vrs_http_respond(vrs_server *server, vrs_conn conn, int status,
                                    const char *content_type, const char *extra_headers,
                                    const void *body, size_t length);

VRS_API void *vrs_conn_user_data(vrs_server *server, vrs_conn conn);
VRS_API vrs_result vrs_conn_set_user_data(vrs_server *server, vrs_conn conn, void *user_data);
/* "203.0.113.5:51234"; "" for a stale handle. */
VRS_API const char *vrs_conn_remote_address(vrs_server *server, vrs_conn conn);
/* 1 while the handle names a connection that can send and receive messages. */
VRS_API int vrs_conn_is_open(vrs_server *server, vrs_conn conn);

/* The port the server listens on (useful with VRS_PORT_ANY). */
VRS_API int vrs_port(const vrs_server *server);

/* Why a Phoenix join was refused: X(name, the reason its error reply gives). */
#define VRS_JOIN_FAILURES(X)                                                                     \
    X(UNMATCHED_TOPIC, "unmatched topic")                                                        \
    X(REF_TOO_LONG, "join_ref too long")                                                         \
    X(INVALID_ROOM_ID, "invalid room id")                                                        \
    X(OTHER_ROOM, "this socket may join only the room named in its URL")                         \
    X(TOO_MANY_CHANNELS, "too many channels joined")                                             \
    X(SERVER_FULL, "server is full")                                                             \
    X(START_FAILED, "failed to start room")                                                      \
    X(ROOM_FULL, "room is full")

typedef enum vrs_join_failure {
#define VRS__JOIN_FAILURE_ENUM(name, reason) VRS_JOIN_FAILURE_##name,
    VRS_JOIN_FAILURES(VRS__JOIN_FAILURE_ENUM)
#undef VRS__JOIN_FAILURE_ENUM
    VRS_JOIN_FAILURE_COUNT
} vrs_join_failure;

/* The reason text of the error reply ("room is full"). */
VRS_API const char *vrs_join_failure_reason(vrs_join_failure failure);

#define VRS_STATS_CLOSE_CODES 16 /* closes_by_code counts codes 1000 to 1015 one by one */

/* Gauges (now) and counters (since vrs_create). Nothing is allocated: a host can read them
   for every metrics scrape. */
typedef struct vrs_stats {
    int connections;        /* accepted sockets in any state */
    int open_connections;   /* WebSocket connections open (on_open seen, on_close not yet) */
    int pool_blocks_total;
    int pool_blocks_used;
    uint64_t messages_received;
    uint64_t messages_sent;
    int phoenix_sockets;    /* open Phoenix sockets (a subset of open_connections) */
    int channels;           /* joined channels: the room logic's peers */
    int relay_peers;        /* channels that joined the relay (sent its "join") */
    int rooms;
    int draining;           /* 1 after vrs_drain */
    uint64_t connections_accepted;  /* sockets accepted (refused ones included) */
    uint64_t connections_refused;   /* answered 503 or dropped: table full, or draining */
    uint64_t bytes_received;        /* from clients' sockets: request heads and frames */
    uint64_t bytes_sent;
    uint64_t slow_consumers_closed; /* closed with 1013: send queue full or pool exhausted */
    /* WebSocket connections ended, by the code on_close reports ([code - 1000]; the rest,
       3000-4999 for instance, in closes_other_code): 1002, 1007 and 1009 are protocol errors
       the server closed on, 1001 idle timeouts and shutdowns, 1006 connections that ended
       without a close frame, 1012 vrs_close_all(..., 1012, ...), 1013 slow consumers. */
    uint64_t closes_by_code[VRS_STATS_CLOSE_CODES];
    uint64_t closes_other_code;
    /* How often each log item happened, whether or not the logger printed it: handshake
       failures by reason are log_counts[VRS_LOG_BAD_UPGRADE], [VRS_LOG_ORIGIN_REFUSED] and the
       others that answer a request with an error status. */
    uint64_t log_counts[VRS_LOG_ITEM_COUNT];
    uint64_t join_failures[VRS_JOIN_FAILURE_COUNT]; /* refused joins by reason */
} vrs_stats;
VRS_API vrs_stats vrs_get_stats(const vrs_server *server);

/* Draining, for restarts behind a load balancer. After vrs_drain the server takes no new
   WebSocket or Phoenix socket: every upgrade request is answered 503 (with "Retry-After: 0",
   logged as VRS_LOG_DRAINING_REFUSED), while plain HTTP requests still reach on_http (so that
   a health check can be answered 503 and the last metrics read) and open connections carry
   on. vrs_close_all then starts the close handshake with `code` (1012, service restart, tells
   clients to come back at once) on every open WebSocket; on_close follows for each. It can be
   called without vrs_drain (open sockets are closed, new ones still accepted). */
VRS_API void vrs_drain(vrs_server *server);
VRS_API vrs_result vrs_close_all(vrs_server *server, int code, const char *reason);

/* Rooms and peers, for the host's room logic. Every data argument is the JSON text of D; it is
   checked, and sent to the client as the push `mediaEvent` with payload {"data": D}. */
VRS_API vrs_result vrs_peer_send(vrs_server *server, vrs_peer peer, const char *data, size_t length);
VRS_API vrs_result vrs_room_broadcast(vrs_server *server, vrs_room room, const char *data,
                                      size_t length);
VRS_API vrs_result vrs_room_broadcast_except(vrs_server *server, vrs_room room, vrs_peer except,
                                             const char *data, size_t length);
/* Any event of the host's: `payload` is the JSON text of an object, as Phoenix clients expect
   (another JSON value: VRS_ERROR_WRONG_TYPE; not JSON: VRS_ERROR_INVALID_ARGUMENT). Names
   starting "phx_" belong to the protocol (VRS_ERROR_RESERVED_EVENT; vrs_peer_close sends
   phx_close). */
VRS_API vrs_result vrs_peer_push(vrs_server *server, vrs_peer peer, const char *event,
                                 const char *payload, size_t length);
/* A binary push (V2 sockets only: V1 has no binary frames); event names as vrs_peer_push. */
VRS_API vrs_result vrs_peer_push_binary(vrs_server *server, vrs_peer peer, const char *event,
                                        const void *payload, size_t length);
/* Ends the room: each of its channels gets phx_error (clients rejoin and find a new room). */
VRS_API vrs_result vrs_room_close(vrs_server *server, vrs_room room);
/* Ends one peer's channel as a Phoenix server does when a channel stops: the peer leaves its
   room (on_peer_left; the relay tells the others peerLeft), and its client gets phx_close for
   the topic, with payload {"reason": reason} ({} when reason is NULL), so phoenix.js closes
   the channel and does not rejoin it. The socket and its other channels stay open. `reason`
   is UTF-8 of at most VRS_PEER_CLOSE_REASON_MAX bytes (else VRS_ERROR_TOO_LARGE). */
#define VRS_PEER_CLOSE_REASON_MAX 255
VRS_API vrs_result vrs_peer_close(vrs_server *server, vrs_peer peer, const char *reason);
/* Copies up to `capacity` rooms in use (in table order); returns how many. A capacity of
   desc.max_rooms always suffices. */
VRS_API int vrs_rooms(vrs_server *server, vrs_room *rooms, int capacity);

VRS_API vrs_room vrs_find_room(vrs_server *server, const char *room_id);
VRS_API const char *vrs_room_name(vrs_server *server, vrs_room room); /* "" when stale */
VRS_API int vrs_room_peer_count(vrs_server *server, vrs_room room);
/* Copies up to `capacity` peers of the room in the room's order (the order they joined, except
   that the relay logic moves a peer to the end when it joins the relay); returns how many. */
VRS_API int vrs_room_peers(vrs_server *server, vrs_room room, vrs_peer *peers, int capacity);
VRS_API vrs_peer vrs_find_peer(vrs_server *server, const char *peer_id);
VRS_API const char *vrs_peer_id(vrs_server *server, vrs_peer peer); /* UUID; "" when stale */
VRS_API vrs_room vrs_peer_room(vrs_server *server, vrs_peer peer);
VRS_API vrs_conn vrs_peer_conn(vrs_server *server, vrs_peer peer);
VRS_API void *vrs_room_user_data(vrs_server *server, vrs_room room);
VRS_API vrs_result vrs_room_set_user_data(vrs_server *server, vrs_room room, void *user_data);
VRS_API void *vrs_peer_user_data(vrs_server *server, vrs_peer peer);
VRS_API vrs_result vrs_peer_set_user_data(vrs_server *server, vrs_peer peer, void *user_data);

/* ---------------------------------------------------------------------------------------------
   JSON for room logic: the server's own strict reader and escaping writer, over the caller's
   bytes and into the caller's buffer. Nothing is allocated; every call can be used on bytes a
   client sent (bad input is refused with a result, never read past its end).
   ------------------------------------------------------------------------------------------- */

/* Writing. Begin with vrs_json_writer_init, add values in document order (the writer puts the
   commas and colons), end with vrs_json_finish:

       char text[256];
       size_t length;
       vrs_json_writer w;
       vrs_json_writer_init(&w, text, sizeof text);
       vrs_json_begin_object(&w);
       vrs_json_key(&w, "type");  vrs_json_cstring(&w, "chat");
       vrs_json_key(&w, "text");  vrs_json_string(&w, said, said_length); // NUL allowed
       vrs_json_key(&w, "count"); vrs_json_int(&w, 3);
       vrs_json_end_object(&w);
       if (vrs_json_finish(&w, &length) == VRS_OK) vrs_peer_send(server, peer, text, length);

   A write that does not fit is dropped with every later one: vrs_json_finish then says
   VRS_ERROR_BUFFER_TOO_SMALL. A write out of place (a value where an object wants a key, a key
   in an array, an end that does not match its begin, a second top-level value), a string that
   is not UTF-8 or raw text that is not one JSON value makes vrs_json_finish say
   VRS_ERROR_INVALID_ARGUMENT. Containers nest at most 64 deep. The fields are the writer's:
   read them, do not set them. */
typedef struct vrs_json_writer {
    char *buffer;
    size_t capacity;
    size_t length;      /* bytes written so far */
    int overflowed;     /* a write did not fit */
    int misused;        /* a write was out of place or its text was bad */
    int depth;          /* containers open */
    int after_key;      /* a key was written and its value not yet */
    int needs_comma;    /* the current container already holds a value */
    uint64_t objects;   /* bit n: the container at depth n is an object */
} vrs_json_writer;

VRS_API void vrs_json_writer_init(vrs_json_writer *writer, char *buffer, size_t capacity);
VRS_API void vrs_json_begin_object(vrs_json_writer *writer);
VRS_API void vrs_json_end_object(vrs_json_writer *writer);
VRS_API void vrs_json_begin_array(vrs_json_writer *writer);
VRS_API void vrs_json_end_array(vrs_json_writer *writer);
/* A member's key, NUL-terminated UTF-8; its value follows. */
VRS_API void vrs_json_key(vrs_json_writer *writer, const char *key);
/* `length` bytes of UTF-8 (NUL bytes allowed), escaped as JSON needs. */
VRS_API void vrs_json_string(vrs_json_writer *writer, const char *utf8, size_t length);
VRS_API void vrs_json_cstring(vrs_json_writer *writer, const char *utf8);
VRS_API void vrs_json_int(vrs_json_writer *writer, int64_t value);
VRS_API void vrs_json_bool(vrs_json_writer *writer, int value);
VRS_API void vrs_json_null(vrs_json_writer *writer);
/* A JSON value as it stands (a client's D, a member found below); it is checked. */
VRS_API void vrs_json_raw(vrs_json_writer *writer, const char *json, size_t length);
/* VRS_OK with *length the bytes written (NUL-terminated when a byte is left for it),
   VRS_ERROR_BUFFER_TOO_SMALL or VRS_ERROR_INVALID_ARGUMENT (above; also: nothing written, or a
   container still open). `length` may be NULL. */
VRS_API vrs_result vrs_json_finish(vrs_json_writer *writer, size_t *length);

/* Reading. Each call checks that `json` (`length` bytes, no NUL needed) is one valid JSON
   value (else VRS_ERROR_INVALID_JSON), then follows `path`: member names and array indexes
   separated by dots ("data.metadata.name", "peers.0.id"); "" or NULL is the value itself.
   A path that leads nowhere gives VRS_ERROR_NOT_FOUND; a key that holds a dot is reached with
   vrs_json_member, which takes its key whole. When a key repeats, the last one counts.

       char text[512];
       size_t text_length;
       int64_t to;
       if (vrs_json_get_string(data, length, "text", text, sizeof text, &text_length) == VRS_OK &&
           vrs_json_get_int(data, length, "to.seat", &to) == VRS_OK) ...

   A found value (vrs_span) points into `json`: pass it back in to read inside it. */
typedef enum vrs_json_type {
    VRS_JSON_INVALID, VRS_JSON_NULL, VRS_JSON_FALSE, VRS_JSON_TRUE,
    VRS_JSON_NUMBER, VRS_JSON_STRING, VRS_JSON_ARRAY, VRS_JSON_OBJECT
} vrs_json_type;

/* VRS_JSON_INVALID unless the text is one valid JSON value. */
VRS_API vrs_json_type vrs_json_type_of(const char *json, size_t length);
/* The raw JSON text of the value at `path` (no whitespace around it). */
VRS_API vrs_result vrs_json_find(const char *json, size_t length, const char *path, vrs_span *value);
/* The member `key` (UTF-8, taken whole: dots are part of it) of the object `json`. */
VRS_API vrs_result vrs_json_member(const char *json, size_t length, const char *key, vrs_span *value);
/* The string at `path`, decoded into out as UTF-8 and NUL-terminated; *out_length (may be NULL)
   is its length, which a \u0000 inside it makes longer than strlen's. VRS_ERROR_WRONG_TYPE:
   not a string; VRS_ERROR_BUFFER_TOO_SMALL: it needs more than capacity - 1 bytes. */
VRS_API vrs_result vrs_json_get_string(const char *json, size_t length, const char *path, char *out,
                                       size_t capacity, size_t *out_length);
/* An integer (no fraction or exponent) in int64_t's range; else VRS_ERROR_WRONG_TYPE. */
VRS_API vrs_result vrs_json_get_int(const char *json, size_t length, const char *path, int64_t *value);
/* true (1) or false (0); else VRS_ERROR_WRONG_TYPE. */
VRS_API vrs_result vrs_json_get_bool(const char *json, size_t length, const char *path, int *value);

/* The elements of the array, or the members of the object, at `path`, in order:

       vrs_json_iterator it;
       vrs_span key, value;
       if (vrs_json_iterate(data, length, "peers", &it) == VRS_OK)
           while (vrs_json_next(&it, &key, &value)) ...

   For an object, key is the member's key as JSON text, quotes included (decode it with
   vrs_json_get_string(key.ptr, key.length, "", ...)); for an array it is empty. */
typedef struct vrs_json_iterator {
    const char *at, *end;
    int is_object;
} vrs_json_iterator;
VRS_API vrs_result vrs_json_iterate(const char *json, size_t length, const char *path,
                                    vrs_json_iterator *iterator);
/* 1 with the next element (key may be NULL); 0 at the end. */
VRS_API int vrs_json_next(vrs_json_iterator *iterator, vrs_span *key, vrs_span *value);

#ifdef __cplusplus
}
#endif
#endif /* VIDEOROOM_SIGNAL_H */

/* =============================================================================================
   IMPLEMENTATION
   =========================================================================================== */
#ifdef VRS_IMPLEMENTATION
#ifndef VRS__IMPLEMENTED
#define VRS__IMPLEMENTED

#include <stdio.h>
#include <string.h>
#ifdef _WIN32
#include <ws2tcpip.h>
#include <windows.h>
#include <ntsecapi.h> /* RtlGenRandom */
#ifdef _MSC_VER
#pragma comment(lib, "ws2_32")
#pragma comment(lib, "advapi32")
#endif
#else
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#endif
#ifdef VRS_USE_EPOLL
#ifndef __linux__
#error "VRS_USE_EPOLL needs Linux"
#endif
#include <sys/epoll.h>
#endif
#if defined(__linux__) && !defined(VRS_NO_EVENTFD)
#include <sys/eventfd.h>
#define VRS__EVENTFD 1
#endif

/* Bytes that are only looked at (unmasked, checked as UTF-8, scanned in JSON strings) are
   crossed sixteen at a time where the compiler targets SSE2 (every x86-64); eight at a time
   in portable C elsewhere. VRS_NO_SIMD keeps to portable C. */
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VRS_NO_SIMD)
#include <emmintrin.h>
#define VRS__SSE2 1
#endif

#ifndef VRS_ASSERT
#include <assert.h>
#define VRS_ASSERT(c) assert(c)
#endif
#ifndef VRS_MEMCPY
#define VRS_MEMCPY(d, s, n) memcpy((d), (s), (n))
#endif
#ifndef VRS_MEMSET
#define VRS_MEMSET(d, v, n) memset((d), (v), (n))
#endif
#if defined(VRS_MALLOC) != defined(VRS_FREE)
#error "define both VRS_MALLOC and VRS_FREE, or neither"
#endif
#ifndef VRS_MALLOC
#include <stdlib.h>
#define VRS_MALLOC(n) malloc(n)
#define VRS_FREE(p) free(p)
#endif
#ifndef VRS_DEFAULT_LOG
#define VRS_DEFAULT_LOG(level, item, message)                                                    \
    do {                                                                                         \
        if ((level) <= VRS_LOG_LEVEL_WARNING)                                                    \
            fprintf(stderr, "videoroom_signal %s %s: %s\n",                                      \
                    (level) == VRS_LOG_LEVEL_ERROR ? "error" : "warning",                        \
                    vrs_log_item_name(item), (message));                                         \
    } while (0)
#endif
#ifndef VRS_BLOCK_SIZE
#define VRS_BLOCK_SIZE 4096
#endif

#ifdef __cplusplus
#define VRS__CAST(type, value) static_cast<type>(value)
#else
#define VRS__CAST(type, value) ((type)(value))
#endif

#define VRS__NONE 0xFFFFFFFFu
/* Handles: slot index + 1 in the low VRS__INDEX_BITS, the slot's generation above. A slot
   whose generation reaches VRS__GENERATION_LIMIT is retired, never handed out again, so that
   no handle can ever name a later owner of its slot. */
#define VRS__INDEX_BITS 21
#define VRS__INDEX_MASK ((1u << VRS__INDEX_BITS) - 1u)
#define VRS__GENERATION_LIMIT ((uint64_t)1 << (64 - VRS__INDEX_BITS))
#define VRS__MAX_CONNECTIONS 1048575 /* the slots, with VRS_REJECT_SLOTS, stay below the mask */
#define VRS__READ_BUFFER_SIZE 65536
#define VRS__IOV_BATCH 64
#define VRS__ACCEPT_BATCH 64
#define VRS__POLL_FIRST_CONN 2       /* poll(): fds[0] is the listener, fds[1] the wake-up */
#define VRS__POOL_WAIT (VRS__NONE - 1) /* blocked_on: paused until the pool has room */
#define VRS__REFUSAL_LINGER_MS 1000 /* a refused client's socket waits this long for its end */

/* ---------------------------------------------------------------------------------------------
   The platform: sockets, waiting, errors, time and randomness, for POSIX and for Winsock 2.
   The rest of the implementation calls only these (and the BSD socket calls both share).
   ------------------------------------------------------------------------------------------- */

/* What a failed socket call means to the server. */
typedef enum vrs__io_error {
    VRS__IO_RETRY,        /* interrupted by a signal: call again */
    VRS__IO_WOULD_BLOCK,  /* nothing to do until the socket is ready */
    VRS__IO_ABORTED,      /* accept: the client gave up while it waited */
    VRS__IO_EXHAUSTED,    /* accept: out of descriptors or buffers */
    VRS__IO_FAILED
} vrs__io_error;

#ifdef _WIN32

typedef SOCKET vrs__socket;
typedef WSABUF vrs__iovec;
#define VRS__NO_SOCKET INVALID_SOCKET
#define VRS__SHUT_WR SD_SEND
#define VRS__RANDOM_SOURCE "RtlGenRandom"

/* Winsock counts its users: each server takes one reference and hands it back. */
static int vrs__platform_start(void) {
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data) == 0;
}

static void vrs__platform_stop(void) { WSACleanup(); }

static vrs__io_error vrs__last_io_error(void) {
    switch (WSAGetLastError()) {
    case WSAEINTR: return VRS__IO_RETRY;
    case WSAEWOULDBLOCK: return VRS__IO_WOULD_BLOCK;
    case WSAECONNRESET: return VRS__IO_ABORTED; /* accept: reset before it was taken */
    case WSAEMFILE:
    case WSAENOBUFS: return VRS__IO_EXHAUSTED;
    default: return VRS__IO_FAILED;
    }
}

/* The last socket error as text, for a log line. */
static const char *vrs__last_error_text(char *out, size_t size) {
    int code = WSAGetLastError();
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, (DWORD)code, 0,
                             out, (DWORD)size, NULL);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == '.')) out[--n] = '\0';
    if (n == 0) snprintf(out, size, "Winsock error %d", code);
    return out;
}

static void vrs__socket_close(vrs__socket s) { closesocket(s); }

/* Non-blocking, and not inherited by processes the host starts. */
static void vrs__socket_prepare(vrs__socket s) {
    u_long on = 1;
    ioctlsocket(s, FIONBIO, &on);
#ifdef __cplusplus
    SetHandleInformation(reinterpret_cast<HANDLE>(s), HANDLE_FLAG_INHERIT, 0);
#else
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
#endif
}

/* Windows has no SO_REUSEADDR as POSIX means it (its own lets another socket take the port);
   a listener there needs no option to bind again past connections in TIME_WAIT. */
static void vrs__listener_prepare(vrs__socket s) {
    int on = 1;
    setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, VRS__CAST(const char *, (const void *)&on), sizeof on);
}

static void vrs__iov_set(vrs__iovec *v, uint8_t *base, size_t length) {
    v->buf = VRS__CAST(char *, (void *)base);
    v->len = (ULONG)length;
}

/* Bytes sent, or -1 (vrs__last_io_error says why). Winsock raises no SIGPIPE. */
static ptrdiff_t vrs__send_iov(vrs__socket s, vrs__iovec *iov, int count) {
    DWORD sent = 0;
    if (WSASend(s, iov, (DWORD)count, &sent, 0, NULL, NULL) != 0) return -1;
    return (ptrdiff_t)sent;
}

static ptrdiff_t vrs__recv(vrs__socket s, uint8_t *buffer, size_t capacity, int flags) {
    return recv(s, VRS__CAST(char *, (void *)buffer), (int)capacity, flags);
}

/* WSAPoll refuses a set without one socket in it; such a wait is a sleep. */
static int vrs__poll(vrs_pollfd *fds, int count, int wait) {
    int i;
    for (i = 0; i < count; i++)
        if (fds[i].fd != INVALID_SOCKET) return WSAPoll(fds, (ULONG)count, wait);
    Sleep(wait < 0 ? INFINITE : (DWORD)wait);
    return 0;
}

/* The frequency is asked each time (it is read from memory the system shares, no call into
   the kernel): a cached copy would be a data race between servers on different threads. */
static int64_t vrs__clock_ms(void) {
    LARGE_INTEGER frequency, now;
    QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&now);
    return (int64_t)(now.QuadPart / frequency.QuadPart * 1000 + now.QuadPart % frequency.QuadPart * 1000 / frequency.QuadPart);
}

/* The system's generator needs nothing opened: 0 stands for it. */
static int vrs__random_open(void) { return 0; }

static void vrs__random_close(int source) { (void)source; }

/* RtlGenRandom (advapi32's SystemFunction036, behind the C runtime's rand_s) rather than
   BCryptGenRandom: advapi32 is linked by default, so a build names ws2_32 alone. */
static ptrdiff_t vrs__random_read(int source, uint8_t *out, size_t length) {
    (void)source;
    return RtlGenRandom(out, (ULONG)length) ? (ptrdiff_t)length : -1;
}

#else /* POSIX */

typedef int vrs__socket;
typedef struct iovec vrs__iovec;
#define VRS__NO_SOCKET (-1)
#define VRS__SHUT_WR SHUT_WR
#define VRS__RANDOM_SOURCE "/dev/urandom"

static int vrs__platform_start(void) { return 1; }

static void vrs__platform_stop(void) {}

static vrs__io_error vrs__last_io_error(void) {
    switch (errno) {
    case EINTR: return VRS__IO_RETRY;
    case ECONNABORTED: return VRS__IO_ABORTED;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM: return VRS__IO_EXHAUSTED;
    default: return errno == EAGAIN || errno == EWOULDBLOCK ? VRS__IO_WOULD_BLOCK : VRS__IO_FAILED;
    }
}

static const char *vrs__last_error_text(char *out, size_t size) {
    snprintf(out, size, "%s", strerror(errno));
    return out;
}

static void vrs__socket_close(vrs__socket s) { close(s); }

/* Non-blocking, and closed in programs the host executes. */
static void vrs__socket_prepare(vrs__socket s) {
    fcntl(s, F_SETFL, fcntl(s, F_GETFL, 0) | O_NONBLOCK);
    fcntl(s, F_SETFD, FD_CLOEXEC);
}

/* A restarted server binds again while old connections linger in TIME_WAIT. */
static void vrs__listener_prepare(vrs__socket s) {
    int on = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
}

static void vrs__iov_set(vrs__iovec *v, uint8_t *base, size_t length) {
    v->iov_base = base;
    v->iov_len = length;
}

/* Bytes sent, or -1 (vrs__last_io_error says why). A peer gone never raises SIGPIPE where
   MSG_NOSIGNAL exists; elsewhere the host ignores SIGPIPE. */
static ptrdiff_t vrs__send_iov(vrs__socket s, vrs__iovec *iov, int count) {
    struct msghdr message;
    VRS_MEMSET(&message, 0, sizeof message);
    message.msg_iov = iov;
    message.msg_iovlen = (size_t)count;
#ifdef MSG_NOSIGNAL
    return sendmsg(s, &message, MSG_NOSIGNAL);
#else
    return sendmsg(s, &message, 0);
#endif
}

static ptrdiff_t vrs__recv(vrs__socket s, uint8_t *buffer, size_t capacity, int flags) {
    return recv(s, buffer, capacity, flags);
}

#ifndef VRS_USE_EPOLL
static int vrs__poll(vrs_pollfd *fds, int count, int wait) { return poll(fds, (nfds_t)count, wait); }
#endif

static int64_t vrs__clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A descriptor of /dev/urandom, or -1. */
static int vrs__random_open(void) {
    int source = open("/dev/urandom", O_RDONLY);
    if (source >= 0) fcntl(source, F_SETFD, FD_CLOEXEC);
    return source;
}

static void vrs__random_close(int source) {
    if (source >= 0) close(source);
}

static ptrdiff_t vrs__random_read(int source, uint8_t *out, size_t length) {
    ptrdiff_t got;
    do got = read(source, out, length);
    while (got < 0 && errno == EINTR);
    return got;
}

#endif

/* ---------------------------------------------------------------------------------------------
   Names of results and log items
   ------------------------------------------------------------------------------------------- */

VRS_API const char *vrs_result_string(vrs_result result) {
    switch (result) {
    case VRS_OK: return "ok";
    case VRS_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case VRS_ERROR_OUT_OF_MEMORY: return "out of memory";
    case VRS_ERROR_ADDRESS: return "cannot listen on the address";
    case VRS_ERROR_INVALID_CONNECTION: return "invalid or stale connection handle";
    case VRS_ERROR_NOT_OPEN: return "connection not open";
    case VRS_ERROR_TOO_LARGE: return "message too large";
    case VRS_ERROR_SLOW_CONSUMER: return "send queue full (slow consumer)";
    case VRS_ERROR_POOL_EXHAUSTED: return "buffer pool exhausted";
    case VRS_ERROR_SYSTEM: return "system call failed";
    case VRS_ERROR_INVALID_JSON: return "invalid JSON";
    case VRS_ERROR_NOT_FOUND: return "no such member or element";
    case VRS_ERROR_WRONG_TYPE: return "JSON value of another type";
    case VRS_ERROR_BUFFER_TOO_SMALL: return "buffer too small";
    case VRS_ERROR_RESERVED_EVENT: return "reserved event name (phx_...)";
    }
    return "unknown result";
}

VRS_API const char *vrs_log_item_name(vrs_log_item item) {
    switch (item) {
#define VRS__LOG_NAME(name, level, text) case VRS_LOG_##name: return #name;
        VRS_LOG_ITEMS(VRS__LOG_NAME)
#undef VRS__LOG_NAME
    case VRS_LOG_ITEM_COUNT: break;
    }
    return "UNKNOWN";
}

static vrs_log_level vrs__log_item_level(vrs_log_item item) {
    switch (item) {
#define VRS__LOG_LEVEL(name, level, text) case VRS_LOG_##name: return VRS_LOG_LEVEL_##level;
        VRS_LOG_ITEMS(VRS__LOG_LEVEL)
#undef VRS__LOG_LEVEL
    case VRS_LOG_ITEM_COUNT: break;
    }
    return VRS_LOG_LEVEL_ERROR;
}

static const char *vrs__log_item_text(vrs_log_item item) {
    switch (item) {
#define VRS__LOG_TEXT(name, level, text) case VRS_LOG_##name: return text;
        VRS_LOG_ITEMS(VRS__LOG_TEXT)
#undef VRS__LOG_TEXT
    case VRS_LOG_ITEM_COUNT: break;
    }
    return "";
}

VRS_API const char *vrs_join_failure_reason(vrs_join_failure failure) {
    switch (failure) {
#define VRS__JOIN_FAILURE_REASON(name, reason) case VRS_JOIN_FAILURE_##name: return reason;
        VRS_JOIN_FAILURES(VRS__JOIN_FAILURE_REASON)
#undef VRS__JOIN_FAILURE_REASON
    case VRS_JOIN_FAILURE_COUNT: break;
    }
    return "join refused";
}

/* ---------------------------------------------------------------------------------------------
   SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept
   ------------------------------------------------------------------------------------------- */

typedef struct vrs__sha1 {
    uint32_t state[5];
    uint64_t total_bytes;
    uint8_t block[64];
    size_t block_fill;
} vrs__sha1;

static uint32_t vrs__rotl32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void vrs__sha1_init(vrs__sha1 *h) {
    h->state[0] = 0x67452301u;
    h->state[1] = 0xEFCDAB89u;
    h->state[2] = 0x98BADCFEu;
    h->state[3] = 0x10325476u;
    h->state[4] = 0xC3D2E1F0u;
    h->total_bytes = 0;
    h->block_fill = 0;
}

static void vrs__sha1_compress(vrs__sha1 *h, const uint8_t *block) {
    uint32_t w[80], a, b, c, d, e, f, k;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)block[i * 4] << 24 | (uint32_t)block[i * 4 + 1] << 16 |
               (uint32_t)block[i * 4 + 2] << 8 | (uint32_t)block[i * 4 + 3];
    for (i = 16; i < 80; i++) w[i] = vrs__rotl32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h->state[0]; b = h->state[1]; c = h->state[2]; d = h->state[3]; e = h->state[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
        {
            uint32_t t = vrs__rotl32(a, 5) + f + e + k + w[i];
            e = d; d = c; c = vrs__rotl32(b, 30); b = a; a = t;
        }
    }
    h->state[0] += a; h->state[1] += b; h->state[2] += c; h->state[3] += d; h->state[4] += e;
}

static void vrs__sha1_update(vrs__sha1 *h, const void *data, size_t length) {
    const uint8_t *p = VRS__CAST(const uint8_t *, data);
    h->total_bytes += length;
    while (length > 0) {
        size_t take = 64 - h->block_fill;
        if (take > length) take = length;
        VRS_MEMCPY(h->block + h->block_fill, p, take);
        h->block_fill += take;
        p += take;
        length -= take;
        if (h->block_fill == 64) {
            vrs__sha1_compress(h, h->block);
            h->block_fill = 0;
        }
    }
}

static void vrs__sha1_final(vrs__sha1 *h, uint8_t digest[20]) {
    uint64_t bits = h->total_bytes * 8;
    uint8_t pad = 0x80, zero = 0, length_be[8];
    int i;
    vrs__sha1_update(h, &pad, 1);
    while (h->block_fill != 56) vrs__sha1_update(h, &zero, 1);
    for (i = 0; i < 8; i++) length_be[i] = (uint8_t)(bits >> (56 - 8 * i));
    vrs__sha1_update(h, length_be, 8);
    for (i = 0; i < 20; i++) digest[i] = (uint8_t)(h->state[i / 4] >> (24 - 8 * (i % 4)));
}

/* ---------------------------------------------------------------------------------------------
   Base64 (RFC 4648, standard alphabet with padding)
   ------------------------------------------------------------------------------------------- */

static const char vrs__base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes 4*ceil(n/3) characters and a NUL; returns the characters written. */
static size_t vrs__base64_encode(const uint8_t *in, size_t n, char *out) {
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = vrs__base64_alphabet[(v >> 18) & 63];
        out[o++] = vrs__base64_alphabet[(v >> 12) & 63];
        out[o++] = vrs__base64_alphabet[(v >> 6) & 63];
        out[o++] = vrs__base64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0u);
        out[o++] = vrs__base64_alphabet[(v >> 18) & 63];
        out[o++] = vrs__base64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? vrs__base64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int vrs__base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict decoding: length a multiple of 4, padding only at the end, unused bits zero.
   Returns the decoded length, or -1. */
static long vrs__base64_decode(const char *in, size_t n, uint8_t *out, size_t capacity) {
    size_t i, o = 0;
    if (n % 4 != 0) return -1;
    for (i = 0; i < n; i += 4) {
        int v0 = vrs__base64_value(in[i]), v1 = vrs__base64_value(in[i + 1]);
        int v2 = vrs__base64_value(in[i + 2]), v3 = vrs__base64_value(in[i + 3]);
        int last = i + 4 == n;
        uint32_t v;
        if (v0 < 0 || v1 < 0) return -1;
        if (v2 < 0) {
            if (!last || in[i + 2] != '=' || in[i + 3] != '=' || (v1 & 15)) return -1;
            if (o + 1 > capacity) return -1;
            out[o++] = (uint8_t)(v0 << 2 | v1 >> 4);
            break;
        }
        if (v3 < 0) {
            if (!last || in[i + 3] != '=' || (v2 & 3)) return -1;
            if (o + 2 > capacity) return -1;
            out[o++] = (uint8_t)(v0 << 2 | v1 >> 4);
            out[o++] = (uint8_t)((v1 & 15) << 4 | v2 >> 2);
            break;
        }
        if (o + 3 > capacity) return -1;
        v = (uint32_t)v0 << 18 | (uint32_t)v1 << 12 | (uint32_t)v2 << 6 | (uint32_t)v3;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    return (long)o;
}

/* Sec-WebSocket-Accept: base64(SHA-1(key + the RFC 6455 GUID)), 28 characters and a NUL. */
static void vrs__websocket_accept(const char *key, size_t key_length, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    vrs__sha1 h;
    uint8_t digest[20];
    vrs__sha1_init(&h);
    vrs__sha1_update(&h, key, key_length);
    vrs__sha1_update(&h, guid, sizeof guid - 1);
    vrs__sha1_final(&h, digest);
    vrs__base64_encode(digest, 20, out);
}

/* ---------------------------------------------------------------------------------------------
   UTF-8 validation (RFC 3629), incremental so that text is checked as its bytes arrive.
   The state is 0 between characters; otherwise it packs the continuation bytes still due and
   the range the next one must fall in, which is how overlongs, surrogates and code points past
   U+10FFFF are refused at their first impossible byte.
   ------------------------------------------------------------------------------------------- */

#define VRS__UTF8_ACCEPT 0u
#define VRS__UTF8_REJECT 0xFFFFFFFFu

static uint32_t vrs__utf8_state(uint32_t due, uint32_t low, uint32_t high) {
    return due << 16 | low << 8 | high;
}

static uint32_t vrs__utf8_feed(uint32_t state, const uint8_t *p, size_t n) {
    size_t i = 0;
    if (state == VRS__UTF8_REJECT) return state;
    while (i < n) {
        uint8_t b = p[i];
        if (state == VRS__UTF8_ACCEPT) {
            /* ASCII runs are the common case: skip them many bytes at a time */
#ifdef VRS__SSE2
            while (i + 16 <= n && !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + i)))) i += 16;
#endif
            while (i + 8 <= n) {
                uint64_t word;
                VRS_MEMCPY(&word, p + i, 8);
                if (word & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i >= n) break;
            b = p[i++];
            if (b < 0x80) continue;
            if (b >= 0xC2 && b <= 0xDF) state = vrs__utf8_state(1, 0x80, 0xBF);
            else if (b == 0xE0) state = vrs__utf8_state(2, 0xA0, 0xBF);
            else if (b == 0xED) state = vrs__utf8_state(2, 0x80, 0x9F);
            else if (b >= 0xE1 && b <= 0xEF) state = vrs__utf8_state(2, 0x80, 0xBF);
            else if (b == 0xF0) state = vrs__utf8_state(3, 0x90, 0xBF);
            else if (b >= 0xF1 && b <= 0xF3) state = vrs__utf8_state(3, 0x80, 0xBF);
            else if (b == 0xF4) state = vrs__utf8_state(3, 0x80, 0x8F);
            else return VRS__UTF8_REJECT;
        } else {
            uint32_t due = state >> 16, low = (state >> 8) & 0xFF, high = state & 0xFF;
            i++;
            if (b < low || b > high) return VRS__UTF8_REJECT;
            state = due == 1 ? VRS__UTF8_ACCEPT : vrs__utf8_state(due - 1, 0x80, 0xBF);
        }
    }
    return state;
}

static int vrs__utf8_is_valid(const uint8_t *bytes, size_t length) {
    return vrs__utf8_feed(VRS__UTF8_ACCEPT, bytes, length) == VRS__UTF8_ACCEPT;
}

/* ---------------------------------------------------------------------------------------------
   Small text helpers
   ------------------------------------------------------------------------------------------- */

static int vrs__lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int vrs__span_equals_nocase(vrs_span span, const char *text) {
    size_t i;
    for (i = 0; i < span.length; i++)
        if (text[i] == '\0' || vrs__lower((unsigned char)span.ptr[i]) != vrs__lower((unsigned char)text[i]))
            return 0;
    return text[i] == '\0';
}

VRS_API int vrs_span_equals(vrs_span span, const char *text) {
    size_t n = strlen(text);
    return span.length == n && (n == 0 || memcmp(span.ptr, text, n) == 0);
}

static int vrs__is_space(char c) { return c == ' ' || c == '\t'; }

/* The next element of a comma-separated header value ("a, b,c"), trimmed; 0 at the end. */
static int vrs__next_list_item(vrs_span list, size_t *at, vrs_span *item) {
    size_t i = *at;
    while (i < list.length) {
        size_t start, end;
        while (i < list.length && (vrs__is_space(list.ptr[i]) || list.ptr[i] == ',')) i++;
        start = i;
        while (i < list.length && list.ptr[i] != ',') i++;
        end = i;
        while (end > start && vrs__is_space(list.ptr[end - 1])) end--;
        if (end > start) {
            item->ptr = list.ptr + start;
            item->length = end - start;
            *at = i;
            return 1;
        }
    }
    *at = i;
    return 0;
}

/* 1 when the list holds `token`: tokens (Upgrade, Connection) compare without case,
   subprotocol names exactly. */
static int vrs__list_contains(vrs_span list, const char *token, int ignore_case) {
    size_t at = 0;
    vrs_span item;
    while (vrs__next_list_item(list, &at, &item))
        if (ignore_case ? vrs__span_equals_nocase(item, token) : vrs_span_equals(item, token)) return 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
   JSON (RFC 8259): a strict reader over the caller's bytes and a writer into a fixed buffer
   ------------------------------------------------------------------------------------------- */

/*
   Needs <stddef.h>, <stdint.h>, <string.h> (memcmp, memcpy, strlen) and, defined earlier,
   static int vrs__utf8_is_valid(const uint8_t *bytes, size_t length).
   Nothing here allocates or keeps state between calls. The reader validates a frame once with
   vrs__json_validate (iterative, O(n), bounded nesting); the cursor functions then walk the
   validated text in place. They trust that validation but never read past a slice's end, so
   garbage makes them return 0 instead of crashing. */

/* Deepest nesting vrs__json_validate will follow: one bit per level in a 128-byte stack. */
#define VRS__JSON_MAX_DEPTH 1024

typedef struct vrs__json_slice {
    const char *start;
    size_t length;
} vrs__json_slice;

typedef enum vrs__json_kind {
    VRS__JSON_INVALID,
    VRS__JSON_NULL,
    VRS__JSON_FALSE,
    VRS__JSON_TRUE,
    VRS__JSON_NUMBER,
    VRS__JSON_STRING,
    VRS__JSON_ARRAY,
    VRS__JSON_OBJECT
} vrs__json_kind;

/* The unread part of an array's or object's contents, between its brackets. */
typedef struct vrs__json_cursor {
    const char *at;
    const char *end;
} vrs__json_cursor;

static int vrs__json_is_whitespace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *vrs__json_skip_whitespace(const char *at, const char *end) {
    while (at < end && vrs__json_is_whitespace(*at)) at++;
    return at;
}

static int vrs__json_is_digit_at(const char *at, const char *end) {
    return at < end && *at >= '0' && *at <= '9';
}

/* Slices handed in by callers may be a whole frame with surrounding whitespace. */
static vrs__json_slice vrs__json_trim(vrs__json_slice value) {
    const char *end;
    if (!value.start) {
        value.length = 0;
        return value;
    }
    end = value.start + value.length;
    value.start = vrs__json_skip_whitespace(value.start, end);
    while (end > value.start && vrs__json_is_whitespace(end[-1])) end--;
    value.length = (size_t)(end - value.start);
    return value;
}

/* The value of four hex digits, or -1; long because int may be 16 bits. */
static long vrs__json_hex4(const char *at) {
    long value = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = at[i];
        int digit;
        if (c >= '0' && c <= '9') digit = c - '0';
        else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        else return -1;
        value = value * 16 + digit;
    }
    return value;
}

/* ---- Validation: each scanner returns the byte after what it matched, or NULL. ---- */

/* The scanners run for every byte of every message: these are worth their code twice. */
#if defined(__GNUC__) || defined(__clang__)
#define VRS__HOT static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define VRS__HOT static __forceinline
#else
#define VRS__HOT static
#endif

/* Strings are most of what a signaling server reads and writes: their plain runs are crossed
   eight bytes at a time. Each test below is exact for the word as a whole (SWAR: "has a zero
   byte" and "has a byte below n", n <= 128). */
#define VRS__BYTES_ONES 0x0101010101010101ull
#define VRS__BYTES_HIGHS 0x8080808080808080ull

static uint64_t vrs__word_has_byte(uint64_t word, unsigned char byte) {
    uint64_t t = word ^ (VRS__BYTES_ONES * byte);
    return (t - VRS__BYTES_ONES) & ~t & VRS__BYTES_HIGHS;
}

static uint64_t vrs__word_has_below(uint64_t word, unsigned char limit) {
    return (word - VRS__BYTES_ONES * limit) & ~word & VRS__BYTES_HIGHS;
}

/* The index of the lowest byte flagged in a mask of the tests above. The lowest flag is always
   exact (a borrow only runs upward, from a byte that is itself flagged). Bytes are loaded in
   memory order, which is numeric order on a little-endian machine. */
static int vrs__lowest_flagged_byte(uint64_t mask) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(mask) >> 3;
#else
    int i = 0;
    while (!(mask & 0x80u)) {
        mask >>= 8;
        i++;
    }
    return i;
#endif
}

static int vrs__is_little_endian(void) {
    const uint16_t probe = 1;
    return *(const unsigned char *)&probe == 1;
}

/* The first byte at or after `at` inside a JSON string that is not plain ASCII text: a quote, a
   backslash, a control character or a byte of a multi-byte character. */
VRS__HOT const char *vrs__json_plain_run(const char *at, const char *end) {
    int little_endian = vrs__is_little_endian();
#ifdef VRS__SSE2
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(' ');
    while (end - at >= 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)at);
        /* signed, below ' ' is a control byte or one of a multi-byte character (>= 0x80) */
        int flags = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(bytes, quote),
                                                                _mm_cmpeq_epi8(bytes, backslash)),
                                                   _mm_cmplt_epi8(bytes, space)));
        if (flags) return at + __builtin_ctz((unsigned)flags);
        at += 16;
    }
#endif
    while (end - at >= 8) {
        uint64_t word, flags;
        VRS_MEMCPY(&word, at, 8);
        flags = vrs__word_has_byte(word, '"') | vrs__word_has_byte(word, '\\') | vrs__word_has_below(word, 0x20) |
                (word & VRS__BYTES_HIGHS);
        if (flags) {
            if (little_endian) return at + vrs__lowest_flagged_byte(flags);
            break;
        }
        at += 8;
    }
    while (at < end) {
        unsigned char c = (unsigned char)*at;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        at++;
    }
    return at;
}

/* The next quote or backslash: all that matters when crossing a string already validated. */
static const char *vrs__json_next_quote_or_backslash(const char *at, const char *end) {
    int little_endian = vrs__is_little_endian();
    while (end - at >= 8) {
        uint64_t word, flags;
        VRS_MEMCPY(&word, at, 8);
        flags = vrs__word_has_byte(word, '"') | vrs__word_has_byte(word, '\\');
        if (flags) {
            if (little_endian) return at + vrs__lowest_flagged_byte(flags);
            break;
        }
        at += 8;
    }
    while (at < end && *at != '"' && *at != '\\') at++;
    return at;
}

/* The rest of a string escape, from the letter after its backslash: 1 byte, or 5 for \uXXXX;
   0 when it is no escape of JSON's. */
static size_t vrs__json_escape_rest(const char *letter, const char *end) {
    if (letter >= end) return 0;
    switch (*letter) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return 1;
    case 'u':
        /* Lone surrogates pass: JSONTestSuite leaves them to the implementation. */
        return end - letter >= 5 && vrs__json_hex4(letter + 1) >= 0 ? 5 : 0;
    default:
        return 0;
    }
}

static const char *vrs__json_scan_string(const char *at, const char *end) {
    at++; /* the opening quote */
    while ((at = vrs__json_plain_run(at, end)) < end) {
        unsigned char c = (unsigned char)*at;
        if (c == '"') return at + 1;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            size_t rest = vrs__json_escape_rest(at + 1, end);
            if (!rest) return NULL;
            at += 1 + rest;
        } else if (c >= 0x80) {
            /* A run of bytes >= 0x80 is bounded by ASCII, so checking each run checks it all. */
            const char *run = at;
            while (at < end && (unsigned char)*at >= 0x80) at++;
            if (!vrs__utf8_is_valid((const uint8_t *)run, (size_t)(at - run))) return NULL;
        } else {
            at++;
        }
    }
    return NULL;
}

static const char *vrs__json_scan_number(const char *at, const char *end) {
    if (at < end && *at == '-') at++;
    if (at >= end) return NULL;
    if (*at == '0') {
        at++; /* no leading zeros: whatever follows must be a fraction, exponent or delimiter */
    } else if (*at >= '1' && *at <= '9') {
        while (vrs__json_is_digit_at(at, end)) at++;
    } else {
        return NULL;
    }
    if (at < end && *at == '.') {
        at++;
        if (!vrs__json_is_digit_at(at, end)) return NULL;
        while (vrs__json_is_digit_at(at, end)) at++;
    }
    if (at < end && (*at == 'e' || *at == 'E')) {
        at++;
        if (at < end && (*at == '+' || *at == '-')) at++;
        if (!vrs__json_is_digit_at(at, end)) return NULL;
        while (vrs__json_is_digit_at(at, end)) at++;
    }
    return at;
}

static const char *vrs__json_scan_word(const char *at, const char *end, const char *word) {
    size_t length = strlen(word);
    if ((size_t)(end - at) < length || memcmp(at, word, length) != 0) return NULL;
    return at + length;
}

/* ---- Escaped mode: JSON text E read where it stands inside a JSON string D ----

   A relay event arrives as D, a string holding E's serialization. Reading E in place, without
   decoding D, spares a copy of E and lets E's parts be passed on as D already escapes them.
   In D, E's quote is `\"`, E's backslash `\\`, and E's whitespace may be `\n`, `\r` or `\t`; E's
   other bytes stand as they are. Any other escape of D (`\/`, `\b`, `\f`, `\uXXXX`) stops the
   scan: the caller then decodes D and reads E the ordinary way. D's content must have passed
   validation as a string's already: it holds no raw quote or control byte and valid UTF-8. */

VRS__HOT const char *vrs__json_skip_whitespace_escaped(const char *at, const char *end) {
    while (at < end) {
        if (*at == ' ') at++;
        else if (*at == '\\' && end - at >= 2 && (at[1] == 'n' || at[1] == 'r' || at[1] == 't')) at += 2;
        else break;
    }
    return at;
}

static int vrs__json_is_quote_escaped(const char *at, const char *end) {
    return end - at >= 2 && at[0] == '\\' && at[1] == '"';
}

/* E's string whose opening `\"` is at `at`: plain bytes, and E's escapes as D writes them. */
static const char *vrs__json_scan_string_escaped(const char *at, const char *end) {
    at += 2;
    while (at < end && (at = (const char *)memchr(at, '\\', (size_t)(end - at))) != NULL) {
        if (end - at < 2) return NULL;
        if (at[1] == '"') return at + 2; /* E's closing quote */
        if (at[1] != '\\') return NULL;  /* a raw control byte in E's string, or \/ or \u of D */
        at += 2;                         /* E's backslash; E's escape letter follows, as D writes it */
        if (at < end && *at == '\\') { /* E's \" or \\, each escaped again by D */
            if (end - at < 2 || (at[1] != '"' && at[1] != '\\')) return NULL;
            at += 2;
        } else {
            size_t rest = vrs__json_escape_rest(at, end); /* D holds no raw quote: the letter is one of E's */
            if (!rest) return NULL;
            at += rest;
        }
    }
    return NULL;
}

/* Any value but an array or object; at < end. */
VRS__HOT const char *vrs__json_scan_scalar(const char *at, const char *end, int escaped) {
    switch (*at) {
    case '"': return escaped ? NULL : vrs__json_scan_string(at, end);
    case '\\': return escaped && vrs__json_is_quote_escaped(at, end) ? vrs__json_scan_string_escaped(at, end) : NULL;
    case 't': return vrs__json_scan_word(at, end, "true");
    case 'f': return vrs__json_scan_word(at, end, "false");
    case 'n': return vrs__json_scan_word(at, end, "null");
    default: return vrs__json_scan_number(at, end);
    }
}

VRS__HOT const char *vrs__json_skip_space(const char *at, const char *end, int escaped) {
    return escaped ? vrs__json_skip_whitespace_escaped(at, end) : vrs__json_skip_whitespace(at, end);
}

/* A key and its colon, leading whitespace included; *key_end is set to the end of the key. */
VRS__HOT const char *vrs__json_scan_key(const char *at, const char *end, const char **key_end, int escaped) {
    at = vrs__json_skip_space(at, end, escaped);
    if (escaped ? !vrs__json_is_quote_escaped(at, end) : at >= end || *at != '"') return NULL;
    at = escaped ? vrs__json_scan_string_escaped(at, end) : vrs__json_scan_string(at, end);
    if (!at) return NULL;
    *key_end = at;
    at = vrs__json_skip_space(at, end, escaped);
    if (at >= end || *at != ':') return NULL;
    return at + 1;
}

/* One direct child of a container, as validation found it: its key (quotes included; empty in
   an array) and its value. */
typedef struct vrs__json_member {
    vrs__json_slice key, value;
} vrs__json_member;

/* What a validation records besides its verdict, so that callers need no second walk: the
   top-level container's children, and those of one of them (the payload of a V2 message). Each
   list holds up to its capacity; its count says how many there were in all. */
typedef struct vrs__json_record {
    vrs__json_member *members;
    int capacity, count;
    int nested_parent; /* the index of the child whose own children go to `nested`; -1: none */
    vrs__json_member *nested;
    int nested_capacity, nested_count;
} vrs__json_record;

/* A record of the top-level container's children into `members`, and of nothing nested. */
static vrs__json_record vrs__json_record_of(vrs__json_member *members, int capacity) {
    vrs__json_record record;
    VRS_MEMSET(&record, 0, sizeof record);
    record.members = members;
    record.capacity = members ? capacity : 0;
    record.nested_parent = -1;
    return record;
}

static void vrs__json_record_member(vrs__json_member *list, int capacity, int *count, const char *key_start,
                                    const char *key_end, const char *value_start, const char *value_end) {
    if (*count < capacity) {
        list[*count].key.start = key_start;
        list[*count].key.length = key_start ? (size_t)(key_end - key_start) : 0;
        list[*count].value.start = value_start;
        list[*count].value.length = (size_t)(value_end - value_start);
    }
    ++*count;
}

/* 1 if text is exactly one RFC 8259 value (with optional whitespace around it) nested at most
   max_depth arrays/objects deep (clamped to VRS__JSON_MAX_DEPTH). `escaped`: text is E inside D
   (above); 0 then also means "read it decoded". `record` may be NULL. */
VRS__HOT int vrs__json_validate_in(const char *text, size_t length, int max_depth, int escaped,
                                   vrs__json_record *record) {
    /* Bit n set: the container at depth n is an object, so it expects "}" and keys. */
    uint8_t object_levels[VRS__JSON_MAX_DEPTH / 8] = {0};
    /* Where the member being read began, at depth 1 and 2 (a slot each); slot 0 is scratch for
       the depths nothing is recorded at. */
    const char *key_start[3] = {NULL, NULL, NULL}, *key_end[3] = {NULL, NULL, NULL};
    const char *value_start[3] = {NULL, NULL, NULL};
    const char *at = text, *end;
    int depth = 0, found = 0, nested_found = 0;
    int nested_parent = record && record->nested ? record->nested_parent : -1;
    if (record) record->count = record->nested_count = 0;
    if (!text) return 0;
    end = text + length;
    if (max_depth > VRS__JSON_MAX_DEPTH) max_depth = VRS__JSON_MAX_DEPTH;
#define VRS__RECORDED_SLOT(depth) ((depth) == 1 ? 1 : (depth) == 2 && found == nested_parent ? 2 : 0)
    for (;;) {
        /* A value is expected here. */
        int slot;
        at = vrs__json_skip_space(at, end, escaped);
        if (at >= end) return 0;
        slot = VRS__RECORDED_SLOT(depth);
        if (slot) value_start[slot] = at;
        if (*at == '[' || *at == '{') {
            int is_object = *at == '{';
            uint8_t bit = (uint8_t)(1u << (depth & 7));
            if (depth >= max_depth) return 0;
            if (is_object) object_levels[depth >> 3] = (uint8_t)(object_levels[depth >> 3] | bit);
            else object_levels[depth >> 3] = (uint8_t)(object_levels[depth >> 3] & ~bit);
            depth++;
            at = vrs__json_skip_space(at + 1, end, escaped);
            if (at < end && *at == (is_object ? '}' : ']')) {
                at++;
                depth--;
            } else {
                if (is_object) {
                    slot = VRS__RECORDED_SLOT(depth);
                    key_start[slot] = at;
                    if (!(at = vrs__json_scan_key(at, end, &key_end[slot], escaped))) return 0;
                }
                continue;
            }
        } else if (!(at = vrs__json_scan_scalar(at, end, escaped))) {
            return 0;
        }
        /* A value ended: close containers until one continues with a comma. */
        for (;;) {
            int is_object;
            slot = VRS__RECORDED_SLOT(depth);
            if (slot && value_start[slot]) { /* a recorded member just ended */
                if (record && slot == 1)
                    vrs__json_record_member(record->members, record->capacity, &found, key_start[1], key_end[1],
                                            value_start[1], at);
                else if (record)
                    vrs__json_record_member(record->nested, record->nested_capacity, &nested_found, key_start[2],
                                            key_end[2], value_start[2], at);
                else
                    found++;
                value_start[slot] = NULL;
            }
            at = vrs__json_skip_space(at, end, escaped);
            if (depth == 0) {
                if (record) {
                    record->count = found;
                    record->nested_count = nested_found;
                }
                return at == end;
            }
            if (at >= end) return 0;
            is_object = (object_levels[(depth - 1) >> 3] >> ((depth - 1) & 7)) & 1;
            if (*at == ',') {
                at++;
                if (is_object) {
                    slot = VRS__RECORDED_SLOT(depth);
                    key_start[slot] = vrs__json_skip_space(at, end, escaped);
                    if (!(at = vrs__json_scan_key(at, end, &key_end[slot], escaped))) return 0;
                }
                break;
            }
            if (*at != (is_object ? '}' : ']')) return 0;
            at++;
            depth--;
        }
    }
#undef VRS__RECORDED_SLOT
}

/* Each mode gets its own copy of the validator, with the mode's scanners built in. */
static int vrs__json_validate_plain(const char *text, size_t length, int max_depth, vrs__json_record *record) {
    return vrs__json_validate_in(text, length, max_depth, 0, record);
}

static int vrs__json_validate_escaped(const char *text, size_t length, int max_depth, vrs__json_record *record) {
    return vrs__json_validate_in(text, length, max_depth, 1, record);
}

static int vrs__json_validate_recording(const char *text, size_t length, int max_depth, int escaped,
                                        vrs__json_record *record) {
    return escaped ? vrs__json_validate_escaped(text, length, max_depth, record)
                   : vrs__json_validate_plain(text, length, max_depth, record);
}

/* vrs__json_validate, also recording the top-level container's direct children. */
static int vrs__json_validate_members(const char *text, size_t length, int max_depth, vrs__json_member *members,
                                      int capacity, int *count) {
    vrs__json_record record = vrs__json_record_of(members, capacity);
    int valid = vrs__json_validate_recording(text, length, max_depth, 0, &record);
    if (count) *count = record.count;
    return valid;
}

static int vrs__json_validate(const char *text, size_t length, int max_depth) {
    return vrs__json_validate_recording(text, length, max_depth, 0, NULL);
}

/* ---- Walking validated values ---- */

static vrs__json_kind vrs__json_kind_of(vrs__json_slice value) {
    value = vrs__json_trim(value);
    if (value.length == 0) return VRS__JSON_INVALID;
    switch (value.start[0]) {
    case 'n': return VRS__JSON_NULL;
    case 'f': return VRS__JSON_FALSE;
    case 't': return VRS__JSON_TRUE;
    case '"': return VRS__JSON_STRING;
    case '[': return VRS__JSON_ARRAY;
    case '{': return VRS__JSON_OBJECT;
    default:
        if (value.start[0] == '-' || (value.start[0] >= '0' && value.start[0] <= '9'))
            return VRS__JSON_NUMBER;
        return VRS__JSON_INVALID;
    }
}

/* The end of the string token whose opening quote is at `at`, trusting its escapes. */
static const char *vrs__json_skip_string(const char *at, const char *end) {
    for (at = vrs__json_next_quote_or_backslash(at + 1, end); at < end;
         at = vrs__json_next_quote_or_backslash(at + 1, end)) {
        if (*at == '\\') {
            if (++at >= end) return NULL;
        } else if (*at == '"') {
            return at + 1;
        }
    }
    return NULL;
}

/* The end of the value starting at `at`, trusting validation; NULL if it runs past end. */
static const char *vrs__json_skip_value(const char *at, const char *end) {
    const char *start = at;
    if (at >= end) return NULL;
    if (*at == '"') return vrs__json_skip_string(at, end);
    if (*at == '[' || *at == '{') {
        /* Validated brackets match, so counting them is enough; strings may hold brackets. */
        size_t open = 0;
        while (at < end) {
            if (*at == '"') {
                at = vrs__json_skip_string(at, end);
                if (!at) return NULL;
                continue;
            }
            if (*at == '[' || *at == '{') {
                open++;
            } else if (*at == ']' || *at == '}') {
                if (--open == 0) return at + 1;
            }
            at++;
        }
        return NULL;
    }
    /* A number or literal runs to the next delimiter. */
    while (at < end && !vrs__json_is_whitespace(*at) && *at != ',' && *at != ':' && *at != ']' &&
           *at != '}' && *at != '[' && *at != '{' && *at != '"')
        at++;
    return at > start ? at : NULL;
}

/* Past the whitespace and the one comma that follow an item. */
static const char *vrs__json_skip_separator(const char *at, const char *end) {
    at = vrs__json_skip_whitespace(at, end);
    if (at < end && *at == ',') at++;
    return at;
}

/* Positions cursor inside an array or object; 0 (and an empty cursor) for anything else. */
static int vrs__json_enter(vrs__json_slice container, vrs__json_cursor *cursor) {
    char first, last;
    container = vrs__json_trim(container);
    cursor->at = cursor->end = container.start;
    if (container.length < 2) return 0;
    first = container.start[0];
    last = container.start[container.length - 1];
    if (!((first == '[' && last == ']') || (first == '{' && last == '}'))) return 0;
    cursor->at = container.start + 1;
    cursor->end = container.start + container.length - 1;
    return 1;
}

/* The next array element's exact text; 0 at the end (or on garbage, which ends the walk). */
static int vrs__json_next_element(vrs__json_cursor *cursor, vrs__json_slice *element) {
    const char *start = vrs__json_skip_whitespace(cursor->at, cursor->end);
    const char *after = vrs__json_skip_value(start, cursor->end);
    element->start = NULL;
    element->length = 0;
    if (!after) {
        cursor->at = cursor->end;
        return 0;
    }
    element->start = start;
    element->length = (size_t)(after - start);
    cursor->at = vrs__json_skip_separator(after, cursor->end);
    return 1;
}

/* The next object member: key is the raw string token, quotes included; 0 at the end. */
static int vrs__json_next_member(vrs__json_cursor *cursor, vrs__json_slice *key, vrs__json_slice *value) {
    const char *end = cursor->end;
    const char *key_start = vrs__json_skip_whitespace(cursor->at, end);
    const char *key_end = NULL, *value_start = NULL, *value_end = NULL;
    key->start = value->start = NULL;
    key->length = value->length = 0;
    if (key_start < end && *key_start == '"') key_end = vrs__json_skip_string(key_start, end);
    if (key_end) value_start = vrs__json_skip_whitespace(key_end, end);
    if (value_start && value_start < end && *value_start == ':') {
        value_start = vrs__json_skip_whitespace(value_start + 1, end);
        value_end = vrs__json_skip_value(value_start, end);
    }
    if (!value_end) {
        cursor->at = end;
        return 0;
    }
    key->start = key_start;
    key->length = (size_t)(key_end - key_start);
    value->start = value_start;
    value->length = (size_t)(value_end - value_start);
    cursor->at = vrs__json_skip_separator(value_end, end);
    return 1;
}

/* ---- Decoding strings ---- */

/* The bytes between a string token's quotes; 0 if the slice is not quoted. */
static int vrs__json_string_content(vrs__json_slice token, const char **begin, const char **end) {
    token = vrs__json_trim(token);
    if (token.length < 2 || token.start[0] != '"' || token.start[token.length - 1] != '"') return 0;
    *begin = token.start + 1;
    *end = token.start + token.length - 1;
    return 1;
}

static int vrs__json_encode_utf8(uint32_t code_point, char out[4]) {
    if (code_point < 0x80) {
        out[0] = (char)code_point;
        return 1;
    }
    if (code_point < 0x800) {
        out[0] = (char)(0xC0 | (code_point >> 6));
        out[1] = (char)(0x80 | (code_point & 0x3F));
        return 2;
    }
    if (code_point < 0x10000) {
        out[0] = (char)(0xE0 | (code_point >> 12));
        out[1] = (char)(0x80 | ((code_point >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code_point & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (code_point >> 18));
    out[1] = (char)(0x80 | ((code_point >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((code_point >> 6) & 0x3F));
    out[3] = (char)(0x80 | (code_point & 0x3F));
    return 4;
}

/* Decodes one raw byte or one escape of string content at *at into out: the number of bytes
   written, 0 at end, -1 on a malformed escape. A surrogate pair is one escape; a surrogate
   without its partner becomes U+FFFD, since UTF-8 cannot carry it. */
static int vrs__json_decode_step(const char **at, const char *end, char out[4]) {
    const char *p = *at;
    long unit;
    uint32_t code_point;
    if (p >= end) return 0;
    if (*p != '\\') {
        out[0] = *p;
        *at = p + 1;
        return 1;
    }
    if (end - p < 2) return -1;
    if (p[1] != 'u') {
        switch (p[1]) {
        case '"': out[0] = '"'; break;
        case '\\': out[0] = '\\'; break;
        case '/': out[0] = '/'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        default: return -1;
        }
        *at = p + 2;
        return 1;
    }
    if (end - p < 6 || (unit = vrs__json_hex4(p + 2)) < 0) return -1;
    p += 6;
    code_point = (uint32_t)unit;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        long low = -1;
        if (end - p >= 6 && p[0] == '\\' && p[1] == 'u') low = vrs__json_hex4(p + 2);
        if (low >= 0xDC00 && low <= 0xDFFF) {
            code_point = (uint32_t)(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
            p += 6;
        } else {
            code_point = 0xFFFD;
        }
    } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
        code_point = 0xFFFD;
    }
    *at = p;
    return vrs__json_encode_utf8(code_point, out);
}

/* 1 if the decoded string token equals the text_length bytes of UTF-8 text. */
static int vrs__json_string_equals_n(vrs__json_slice string_token, const char *text, size_t text_length) {
    const char *at, *end;
    char unit[4];
    size_t matched = 0;
    int count;
    if (!text || !vrs__json_string_content(string_token, &at, &end)) return 0;
    /* An escape is always longer than what it stands for: a content as long as text matches
       only byte for byte with no escape in it, and a shorter one never. */
    if ((size_t)(end - at) <= text_length)
        return (size_t)(end - at) == text_length && memcmp(at, text, text_length) == 0 &&
               !memchr(at, '\\', text_length);
    for (;;) {
        const char *run = vrs__json_plain_run(at, end);
        size_t n = (size_t)(run - at);
        if (n) { /* a plain run stands for itself */
            if (n > text_length - matched || memcmp(text + matched, at, n) != 0) return 0;
            matched += n;
            at = run;
        }
        if ((count = vrs__json_decode_step(&at, end, unit)) <= 0) break;
        if ((size_t)count > text_length - matched || memcmp(text + matched, unit, (size_t)count) != 0) return 0;
        matched += (size_t)count;
    }
    return count == 0 && matched == text_length;
}

/* 1 if the decoded string token equals the NUL-terminated UTF-8 text. */
static int vrs__json_string_equals(vrs__json_slice string_token, const char *text) {
    return text && vrs__json_string_equals_n(string_token, text, strlen(text));
}

/* Decodes a string token (quotes included) into out as UTF-8. Returns the decoded length, or -1
   if it does not fit in capacity or the token is not a string. A terminating NUL is written
   only when length < capacity (so a result that exactly fills out is not terminated). The
   decoded text is never longer than the token, so capacity = token length always suffices. */
static long vrs__json_string_decode(vrs__json_slice string_token, char *out, size_t capacity) {
    const char *at, *end;
    char unit[4];
    size_t length = 0;
    int count;
    if (!vrs__json_string_content(string_token, &at, &end)) return -1;
    for (;;) {
        /* everything up to the next backslash is copied whole: escapes are all that decoding
           changes (a string token's content holds no quote) */
        const char *run = (const char *)memchr(at, '\\', (size_t)(end - at));
        size_t n;
        if (!run) run = end;
        n = (size_t)(run - at);
        if (n) {
            if (n > capacity - length) return -1;
            memcpy(out + length, at, n);
            length += n;
            at = run;
        }
        if ((count = vrs__json_decode_step(&at, end, unit)) <= 0) break;
        if ((size_t)count > capacity - length) return -1;
        memcpy(out + length, unit, (size_t)count);
        length += (size_t)count;
    }
    if (count < 0 || length > ((unsigned long)-1 >> 1)) return -1;
    if (length < capacity) out[length] = '\0';
    return (long)length;
}

/* Finds a member by decoded key of key_length bytes; when a key repeats, the last one wins. */
static int vrs__json_object_get_n(vrs__json_slice object, const char *key, size_t key_length, vrs__json_slice *value) {
    vrs__json_cursor cursor;
    vrs__json_slice member_key, member_value;
    int found = 0;
    if (vrs__json_kind_of(object) != VRS__JSON_OBJECT || !vrs__json_enter(object, &cursor)) return 0;
    while (vrs__json_next_member(&cursor, &member_key, &member_value)) {
        if (vrs__json_string_equals_n(member_key, key, key_length)) {
            *value = member_value;
            found = 1;
        }
    }
    return found;
}

static int vrs__json_object_get(vrs__json_slice object, const char *key, vrs__json_slice *value) {
    return key && vrs__json_object_get_n(object, key, strlen(key), value);
}

/* Appends a string literal's bytes. */
#define VRS__JW_LITERAL(w, literal) vrs__jw_raw((w), (literal), sizeof(literal) - 1)

/* ---- Writer: appends into a fixed buffer; the first write that does not fit sets overflowed,
   writes nothing, and every later write is ignored. The buffer is not NUL-terminated. The
   server's own writing uses the public vrs_json_writer's buffer fields only; the fields that
   place commas serve the public functions below. ---- */

typedef vrs_json_writer vrs__json_writer;

static void vrs__jw_init(vrs__json_writer *w, char *buffer, size_t capacity) {
    VRS_MEMSET(w, 0, sizeof *w);
    w->buffer = buffer;
    w->capacity = buffer ? capacity : 0;
}

/* Appends bytes as they are, e.g. structure or already validated JSON. */
static void vrs__jw_raw(vrs__json_writer *w, const char *bytes, size_t length) {
    if (w->overflowed || length == 0) return;
    if (length > w->capacity - w->length) {
        w->overflowed = 1;
        return;
    }
    memcpy(w->buffer + w->length, bytes, length);
    w->length += length;
}

/* Writes utf8 (the caller's valid UTF-8) as a quoted JSON string. U+2028 and U+2029 are escaped
   too: JSON allows them raw, but older JavaScript string literals do not. */
/* The content of a JSON string (no quotes): what vrs__jw_string writes between its quotes. */
static void vrs__jw_string_content(vrs__json_writer *w, const char *utf8, size_t length) {
    size_t i, plain_from = 0;
    for (i = 0; i < length; i++) {
        unsigned char c;
        char escape[6];
        i = (size_t)(vrs__json_plain_run(utf8 + i, utf8 + length) - utf8); /* plain runs stay as they are */
        if (i >= length) break;
        c = (unsigned char)utf8[i];
        size_t escape_length = 2;
        escape[0] = '\\';
        switch (c) {
        case '"': escape[1] = '"'; break;
        case '\\': escape[1] = '\\'; break;
        case '\b': escape[1] = 'b'; break;
        case '\f': escape[1] = 'f'; break;
        case '\n': escape[1] = 'n'; break;
        case '\r': escape[1] = 'r'; break;
        case '\t': escape[1] = 't'; break;
        default:
            if (c < 0x20) {
                memcpy(escape + 1, "u00", 3);
                escape[4] = "0123456789abcdef"[c >> 4];
                escape[5] = "0123456789abcdef"[c & 15];
                escape_length = 6;
            } else if (c == 0xE2 && length - i >= 3 && (unsigned char)utf8[i + 1] == 0x80 &&
                       ((unsigned char)utf8[i + 2] == 0xA8 || (unsigned char)utf8[i + 2] == 0xA9)) {
                memcpy(escape + 1, (unsigned char)utf8[i + 2] == 0xA8 ? "u2028" : "u2029", 5);
                escape_length = 6;
            } else {
                continue;
            }
        }
        vrs__jw_raw(w, utf8 + plain_from, i - plain_from);
        vrs__jw_raw(w, escape, escape_length);
        if (escape_length == 6 && c == 0xE2) i += 2; /* the rest of U+2028/U+2029 */
        plain_from = i + 1;
    }
    vrs__jw_raw(w, utf8 + plain_from, length - plain_from);
}

static void vrs__jw_string(vrs__json_writer *w, const char *utf8, size_t length) {
    VRS__JW_LITERAL(w, "\"");
    vrs__jw_string_content(w, utf8, length);
    VRS__JW_LITERAL(w, "\"");
}

static void vrs__jw_cstring(vrs__json_writer *w, const char *nul_terminated) {
    vrs__jw_string(w, nul_terminated, strlen(nul_terminated));
}

static void vrs__jw_null(vrs__json_writer *w) {
    VRS__JW_LITERAL(w, "null");
}

/* ---- The public JSON functions: the reader and writer above, for hosts ---- */

#define VRS__JSON_WRITER_MAX_DEPTH 64

/* Places a value: after its key inside an object, after a comma inside an array, alone at the
   top. 0 when a value cannot stand here. */
static int vrs__jw_place_value(vrs_json_writer *w) {
    int in_object = w->depth > 0 && ((w->objects >> (w->depth - 1)) & 1u);
    if (w->misused || (in_object ? !w->after_key : w->depth == 0 && w->needs_comma)) {
        w->misused = 1;
        return 0;
    }
    if (!in_object && w->needs_comma) VRS__JW_LITERAL(w, ",");
    w->after_key = 0;
    w->needs_comma = 1;
    return 1;
}

static void vrs__jw_begin(vrs_json_writer *w, int is_object) {
    if (w->depth >= VRS__JSON_WRITER_MAX_DEPTH) w->misused = 1;
    if (w->misused || !vrs__jw_place_value(w)) return;
    if (is_object) w->objects |= (uint64_t)1 << w->depth;
    else w->objects &= ~((uint64_t)1 << w->depth);
    w->depth++;
    w->needs_comma = 0;
    vrs__jw_raw(w, is_object ? "{" : "[", 1);
}

static void vrs__jw_end(vrs_json_writer *w, int is_object) {
    if (w->depth == 0 || w->after_key || (int)((w->objects >> (w->depth - 1)) & 1u) != is_object) w->misused = 1;
    if (w->misused) return;
    w->depth--;
    w->needs_comma = 1;
    vrs__jw_raw(w, is_object ? "}" : "]", 1);
}

VRS_API void vrs_json_writer_init(vrs_json_writer *writer, char *buffer, size_t capacity) {
    vrs__jw_init(writer, buffer, capacity);
}

VRS_API void vrs_json_begin_object(vrs_json_writer *writer) { vrs__jw_begin(writer, 1); }
VRS_API void vrs_json_end_object(vrs_json_writer *writer) { vrs__jw_end(writer, 1); }
VRS_API void vrs_json_begin_array(vrs_json_writer *writer) { vrs__jw_begin(writer, 0); }
VRS_API void vrs_json_end_array(vrs_json_writer *writer) { vrs__jw_end(writer, 0); }

static int vrs__jw_is_utf8(vrs_json_writer *w, const char *text, size_t length) {
    if (text && vrs__utf8_is_valid(VRS__CAST(const uint8_t *, (const void *)text), length)) return 1;
    w->misused = 1;
    return 0;
}

VRS_API void vrs_json_key(vrs_json_writer *writer, const char *key) {
    int in_object = writer->depth > 0 && ((writer->objects >> (writer->depth - 1)) & 1u);
    if (!in_object || writer->after_key) writer->misused = 1;
    if (writer->misused || !vrs__jw_is_utf8(writer, key, key ? strlen(key) : 0)) return;
    if (writer->needs_comma) VRS__JW_LITERAL(writer, ",");
    vrs__jw_cstring(writer, key);
    VRS__JW_LITERAL(writer, ":");
    writer->after_key = 1;
}

VRS_API void vrs_json_string(vrs_json_writer *writer, const char *utf8, size_t length) {
    if (vrs__jw_is_utf8(writer, utf8, length) && vrs__jw_place_value(writer)) vrs__jw_string(writer, utf8, length);
}

VRS_API void vrs_json_cstring(vrs_json_writer *writer, const char *utf8) {
    vrs_json_string(writer, utf8, utf8 ? strlen(utf8) : 0);
}

VRS_API void vrs_json_int(vrs_json_writer *writer, int64_t value) {
    char digits[20];
    size_t n = 0;
    /* the magnitude as unsigned, so that INT64_MIN has one too */
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    if (!vrs__jw_place_value(writer)) return;
    if (value < 0) VRS__JW_LITERAL(writer, "-");
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    vrs__jw_raw(writer, digits + sizeof digits - n, n);
}

VRS_API void vrs_json_bool(vrs_json_writer *writer, int value) {
    if (!vrs__jw_place_value(writer)) return;
    if (value) VRS__JW_LITERAL(writer, "true");
    else VRS__JW_LITERAL(writer, "false");
}

VRS_API void vrs_json_null(vrs_json_writer *writer) {
    if (vrs__jw_place_value(writer)) vrs__jw_null(writer);
}

VRS_API void vrs_json_raw(vrs_json_writer *writer, const char *json, size_t length) {
    if (!json || !vrs__json_validate(json, length, VRS__JSON_MAX_DEPTH)) {
        writer->misused = 1;
        return;
    }
    if (vrs__jw_place_value(writer)) vrs__jw_raw(writer, json, length);
}

VRS_API vrs_result vrs_json_finish(vrs_json_writer *writer, size_t *length) {
    if (length) *length = writer->length;
    if (writer->misused || writer->depth != 0 || !writer->needs_comma) return VRS_ERROR_INVALID_ARGUMENT;
    if (writer->overflowed) return VRS_ERROR_BUFFER_TOO_SMALL;
    if (writer->length < writer->capacity) writer->buffer[writer->length] = '\0';
    return VRS_OK;
}

/* The value one path segment names inside `value`: a member of an object by its decoded key, or
   an element of an array by its index in decimal. */
static int vrs__json_follow(vrs__json_slice *value, const char *segment, size_t length) {
    vrs__json_kind kind = vrs__json_kind_of(*value);
    if (kind == VRS__JSON_OBJECT) return vrs__json_object_get_n(*value, segment, length, value);
    if (kind == VRS__JSON_ARRAY && length > 0 && length <= 9) {
        vrs__json_cursor cursor;
        size_t index = 0, i;
        for (i = 0; i < length; i++) {
            if (segment[i] < '0' || segment[i] > '9') return 0;
            index = index * 10 + (size_t)(segment[i] - '0');
        }
        vrs__json_enter(*value, &cursor);
        while (vrs__json_next_element(&cursor, value))
            if (index-- == 0) return 1;
    }
    return 0;
}

/* The checked text, then the value at `path` inside it (whitespace trimmed). */
static vrs_result vrs__json_find_path(const char *json, size_t length, const char *path, vrs__json_slice *value) {
    if (!json || !vrs__json_validate(json, length, VRS__JSON_MAX_DEPTH)) return VRS_ERROR_INVALID_JSON;
    value->start = json;
    value->length = length;
    *value = vrs__json_trim(*value);
    if (!path || !*path) return VRS_OK;
    for (;;) { /* every dot is followed by a segment, even an empty one (the key "") */
        const char *dot = strchr(path, '.');
        size_t segment = dot ? (size_t)(dot - path) : strlen(path);
        if (!vrs__json_follow(value, path, segment)) return VRS_ERROR_NOT_FOUND;
        if (!dot) return VRS_OK;
        path = dot + 1;
    }
}

static vrs_span vrs__span_of(vrs__json_slice slice) {
    vrs_span span;
    span.ptr = slice.start;
    span.length = slice.length;
    return span;
}

VRS_API vrs_json_type vrs_json_type_of(const char *json, size_t length) {
    vrs__json_slice value;
    if (vrs__json_find_path(json, length, NULL, &value) != VRS_OK) return VRS_JSON_INVALID;
    return VRS__CAST(vrs_json_type, vrs__json_kind_of(value));
}

VRS_API vrs_result vrs_json_find(const char *json, size_t length, const char *path, vrs_span *value) {
    vrs__json_slice found;
    vrs_result result = vrs__json_find_path(json, length, path, &found);
    if (result == VRS_OK && value) *value = vrs__span_of(found);
    return result;
}

VRS_API vrs_result vrs_json_member(const char *json, size_t length, const char *key, vrs_span *value) {
    vrs__json_slice object, found;
    vrs_result result = vrs__json_find_path(json, length, NULL, &object);
    if (result != VRS_OK) return result;
    if (vrs__json_kind_of(object) != VRS__JSON_OBJECT) return VRS_ERROR_WRONG_TYPE;
    if (!vrs__json_object_get(object, key, &found)) return VRS_ERROR_NOT_FOUND;
    if (value) *value = vrs__span_of(found);
    return VRS_OK;
}

VRS_API vrs_result vrs_json_get_string(const char *json, size_t length, const char *path, char *out,
                                       size_t capacity, size_t *out_length) {
    vrs__json_slice found;
    long decoded;
    vrs_result result = vrs__json_find_path(json, length, path, &found);
    if (result != VRS_OK) return result;
    if (vrs__json_kind_of(found) != VRS__JSON_STRING) return VRS_ERROR_WRONG_TYPE;
    if (!out || capacity == 0 || (decoded = vrs__json_string_decode(found, out, capacity - 1)) < 0)
        return VRS_ERROR_BUFFER_TOO_SMALL;
    out[decoded] = '\0';
    if (out_length) *out_length = (size_t)decoded;
    return VRS_OK;
}

VRS_API vrs_result vrs_json_get_int(const char *json, size_t length, const char *path, int64_t *value) {
    vrs__json_slice found;
    uint64_t magnitude = 0, limit;
    size_t i;
    int negative;
    vrs_result result = vrs__json_find_path(json, length, path, &found);
    if (result != VRS_OK) return result;
    if (vrs__json_kind_of(found) != VRS__JSON_NUMBER) return VRS_ERROR_WRONG_TYPE;
    negative = found.start[0] == '-';
    limit = negative ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    for (i = (size_t)negative; i < found.length; i++) {
        unsigned digit = (unsigned)(found.start[i] - '0');
        if (digit > 9 || magnitude > (limit - digit) / 10) return VRS_ERROR_WRONG_TYPE; /* '.', 'e' or too big */
        magnitude = magnitude * 10 + digit;
    }
    if (value) *value = negative ? (magnitude == limit ? INT64_MIN : -(int64_t)magnitude) : (int64_t)magnitude;
    return VRS_OK;
}

VRS_API vrs_result vrs_json_get_bool(const char *json, size_t length, const char *path, int *value) {
    vrs__json_slice found;
    vrs__json_kind kind;
    vrs_result result = vrs__json_find_path(json, length, path, &found);
    if (result != VRS_OK) return result;
    kind = vrs__json_kind_of(found);
    if (kind != VRS__JSON_TRUE && kind != VRS__JSON_FALSE) return VRS_ERROR_WRONG_TYPE;
    if (value) *value = kind == VRS__JSON_TRUE;
    return VRS_OK;
}

VRS_API vrs_result vrs_json_iterate(const char *json, size_t length, const char *path,
                                    vrs_json_iterator *iterator) {
    vrs__json_slice found;
    vrs__json_cursor cursor;
    vrs_result result = vrs__json_find_path(json, length, path, &found);
    iterator->at = iterator->end = NULL;
    iterator->is_object = 0;
    if (result != VRS_OK) return result;
    if (!vrs__json_enter(found, &cursor)) return VRS_ERROR_WRONG_TYPE;
    iterator->at = cursor.at;
    iterator->end = cursor.end;
    iterator->is_object = found.start[0] == '{';
    return VRS_OK;
}

VRS_API int vrs_json_next(vrs_json_iterator *iterator, vrs_span *key, vrs_span *value) {
    vrs__json_cursor cursor;
    vrs__json_slice member_key, member_value;
    int more;
    cursor.at = iterator->at;
    cursor.end = iterator->end;
    member_key.start = NULL;
    member_key.length = 0;
    more = iterator->at && (iterator->is_object ? vrs__json_next_member(&cursor, &member_key, &member_value)
                                                : vrs__json_next_element(&cursor, &member_value));
    iterator->at = cursor.at;
    if (!more) return 0;
    if (key) *key = vrs__span_of(member_key);
    if (value) *value = vrs__span_of(member_value);
    return 1;
}

/* ---------------------------------------------------------------------------------------------
   HTTP request heads
   ------------------------------------------------------------------------------------------- */

typedef enum vrs__parse_status {
    VRS__PARSE_NEED_MORE = 0,
    VRS__PARSE_DONE = 1,
    VRS__PARSE_BAD = -1,
    VRS__PARSE_TOO_MANY_HEADERS = -2
} vrs__parse_status;

static int vrs__is_token_char(unsigned char c) {
    /* RFC 9110 tchar */
    if (c >= '0' && c <= '9') return 1;
    if ((c | 32) >= 'a' && (c | 32) <= 'z') return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the end of the head: the first empty line (CRLF, or a bare LF, which RFC 9112 lets a
   recipient accept). Returns the head's length including that line, or 0 when not yet there. */
static size_t vrs__http_head_length(const char *data, size_t length) {
    size_t i;
    for (i = 0; i < length; i++) {
        if (data[i] != '\n') continue;
        if (i + 1 < length && data[i + 1] == '\n') return i + 2;
        if (i + 2 < length && data[i + 1] == '\r' && data[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* Parses one complete head (as measured by vrs__http_head_length). */
static vrs__parse_status vrs__http_parse(const char *data, size_t length, vrs_request *request) {
    const char *p = data, *end = data + length, *line_end;
    size_t n;
    VRS_MEMSET(request, 0, sizeof *request);
    /* request line: method SP target SP HTTP/1.x */
    line_end = VRS__CAST(const char *, memchr(p, '\n', (size_t)(end - p)));
    if (!line_end) return VRS__PARSE_BAD;
    n = (size_t)(line_end - p);
    if (n > 0 && p[n - 1] == '\r') n--;
    {
        const char *q = p, *line = p + n;
        request->method.ptr = q;
        while (q < line && vrs__is_token_char((unsigned char)*q)) q++;
        request->method.length = (size_t)(q - p);
        if (request->method.length == 0 || q >= line || *q != ' ') return VRS__PARSE_BAD;
        q++;
        request->target.ptr = q;
        while (q < line && (unsigned char)*q > ' ' && *q != 0x7F) q++;
        request->target.length = (size_t)(q - request->target.ptr);
        if (request->target.length == 0 || q >= line || *q != ' ') return VRS__PARSE_BAD;
        q++;
        if ((size_t)(line - q) != 8 || memcmp(q, "HTTP/1.", 7) != 0 || q[7] < '0' || q[7] > '9')
            return VRS__PARSE_BAD;
        request->minor_version = q[7] - '0';
    }
    {
        const char *question = VRS__CAST(const char *, memchr(request->target.ptr, '?', request->target.length));
        request->path.ptr = request->target.ptr;
        if (question) {
            request->path.length = (size_t)(question - request->target.ptr);
            request->query.ptr = question + 1;
            request->query.length = request->target.length - request->path.length - 1;
        } else {
            request->path.length = request->target.length;
            request->query.ptr = request->target.ptr + request->target.length;
        }
    }
    p = line_end + 1;
    /* header fields: name ":" OWS value OWS, up to the empty line */
    for (;;) {
        const char *colon, *v, *ve;
        line_end = VRS__CAST(const char *, memchr(p, '\n', (size_t)(end - p)));
        if (!line_end) return VRS__PARSE_BAD;
        n = (size_t)(line_end - p);
        if (n > 0 && p[n - 1] == '\r') n--;
        if (n == 0) break;
        if (vrs__is_space(*p)) return VRS__PARSE_BAD; /* obsolete line folding */
        colon = p;
        while (colon < p + n && vrs__is_token_char((unsigned char)*colon)) colon++;
        if (colon == p || colon >= p + n || *colon != ':') return VRS__PARSE_BAD;
        v = colon + 1;
        ve = p + n;
        while (v < ve && vrs__is_space(*v)) v++;
        while (ve > v && vrs__is_space(ve[-1])) ve--;
        {
            const char *c;
            for (c = v; c < ve; c++)
                if (((unsigned char)*c < ' ' && *c != '\t') || *c == 0x7F) return VRS__PARSE_BAD;
        }
        if (request->header_count == VRS_MAX_HEADERS) return VRS__PARSE_TOO_MANY_HEADERS;
        request->headers[request->header_count].name.ptr = p;
        request->headers[request->header_count].name.length = (size_t)(colon - p);
        request->headers[request->header_count].value.ptr = v;
        request->headers[request->header_count].value.length = (size_t)(ve - v);
        request->header_count++;
        p = line_end + 1;
    }
    return VRS__PARSE_DONE;
}

VRS_API vrs_span vrs_request_header(const vrs_request *request, const char *name) {
    vrs_span none;
    int i;
    for (i = 0; i < request->header_count; i++)
        if (vrs__span_equals_nocase(request->headers[i].name, name)) return request->headers[i].value;
    none.ptr = "";
    none.length = 0;
    return none;
}

static int vrs__hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

/* Percent-decodes `in` (and '+' as space, as forms encode it). Returns the length or -1. */
static long vrs__percent_decode(const char *in, size_t n, char *out, size_t capacity) {
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n) return -1;
            hi = vrs__hex_value(in[i + 1]);
            lo = vrs__hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o + 1 >= capacity) return -1;
        out[o++] = c;
    }
    if (o < capacity) out[o] = '\0';
    return (long)o;
}

VRS_API int vrs_request_query(const vrs_request *request, const char *name, char *out,
                              size_t capacity) {
    const char *p = request->query.ptr, *end = p + request->query.length;
    size_t name_length = strlen(name);
    while (p < end) {
        const char *pair_end = p, *equals;
        while (pair_end < end && *pair_end != '&') pair_end++;
        equals = p;
        while (equals < pair_end && *equals != '=') equals++;
        if ((size_t)(equals - p) == name_length && memcmp(p, name, name_length) == 0) {
            const char *value = equals < pair_end ? equals + 1 : pair_end;
            long decoded;
            if (capacity == 0) return -2;
            decoded = vrs__percent_decode(value, (size_t)(pair_end - value), out, capacity);
            return decoded < 0 ? -2 : (int)decoded;
        }
        p = pair_end < end ? pair_end + 1 : end;
    }
    return -1;
}

VRS_API int vrs_request_offers_subprotocol(const vrs_request *request, const char *protocol) {
    int i;
    for (i = 0; i < request->header_count; i++)
        if (vrs__span_equals_nocase(request->headers[i].name, "Sec-WebSocket-Protocol") &&
            vrs__list_contains(request->headers[i].value, protocol, 0))
            return 1;
    return 0;
}

/* The outcome of checking a request as a WebSocket upgrade (RFC 6455 section 4.2.1). */
typedef enum vrs__upgrade_check {
    VRS__NOT_AN_UPGRADE = 0, /* plain HTTP */
    VRS__UPGRADE_VALID,
    VRS__UPGRADE_BAD,        /* 400 */
    VRS__UPGRADE_VERSION     /* 426 */
} vrs__upgrade_check;

static int vrs__header_present(const vrs_request *request, const char *name) {
    int i;
    for (i = 0; i < request->header_count; i++)
        if (vrs__span_equals_nocase(request->headers[i].name, name)) return 1;
    return 0;
}

/* 1 when any header of this name lists the token (headers may repeat). */
static int vrs__headers_list_token(const vrs_request *request, const char *name, const char *token) {
    int i;
    for (i = 0; i < request->header_count; i++)
        if (vrs__span_equals_nocase(request->headers[i].name, name) &&
            vrs__list_contains(request->headers[i].value, token, 1))
            return 1;
    return 0;
}

static vrs__upgrade_check vrs__check_upgrade(const vrs_request *request) {
    vrs_span key, version;
    uint8_t decoded[18];
    if (!vrs__header_present(request, "Upgrade") && !vrs__header_present(request, "Sec-WebSocket-Key") &&
        !vrs__header_present(request, "Sec-WebSocket-Version") &&
        !vrs__headers_list_token(request, "Connection", "upgrade"))
        return VRS__NOT_AN_UPGRADE;
    if (!vrs_span_equals(request->method, "GET") || request->minor_version < 1) return VRS__UPGRADE_BAD;
    if (!vrs__headers_list_token(request, "Upgrade", "websocket")) return VRS__UPGRADE_BAD;
    if (!vrs__headers_list_token(request, "Connection", "upgrade")) return VRS__UPGRADE_BAD;
    key = vrs_request_header(request, "Sec-WebSocket-Key");
    if (key.length != 24 || vrs__base64_decode(key.ptr, key.length, decoded, sizeof decoded) != 16)
        return VRS__UPGRADE_BAD;
    version = vrs_request_header(request, "Sec-WebSocket-Version");
    if (!vrs_span_equals(version, "13")) return VRS__UPGRADE_VERSION;
    return VRS__UPGRADE_VALID;
}

static const char *vrs__http_reason(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    }
    return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

/* ---------------------------------------------------------------------------------------------
   WebSocket frames (RFC 6455 section 5)
   ------------------------------------------------------------------------------------------- */

enum {
    VRS__OP_CONTINUATION = 0x0,
    VRS__OP_TEXT = 0x1,
    VRS__OP_BINARY = 0x2,
    VRS__OP_CLOSE = 0x8,
    VRS__OP_PING = 0x9,
    VRS__OP_PONG = 0xA
};

/* Close codes an endpoint may send (section 7.4 and the IANA registry). */
static int vrs__close_code_is_valid(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Writes a server frame header (never masked) and returns its length: 2, 4 or 10 bytes. */
static size_t vrs__frame_header(uint8_t out[10], int opcode, uint64_t payload_length) {
    out[0] = (uint8_t)(0x80 | opcode);
    if (payload_length < 126) {
        out[1] = (uint8_t)payload_length;
        return 2;
    }
    if (payload_length <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_length >> 8);
        out[3] = (uint8_t)payload_length;
        return 4;
    }
    {
        int i;
        out[1] = 127;
        for (i = 0; i < 8; i++) out[2 + i] = (uint8_t)(payload_length >> (56 - 8 * i));
        return 10;
    }
}

/* The incremental frame reader's state, kept per connection so that a frame may arrive
   split at any byte. */
typedef struct vrs__frame_reader {
    uint8_t header[14];
    uint8_t header_fill;
    uint8_t in_payload;      /* header done, payload bytes still due */
    uint8_t opcode;          /* of the current frame */
    uint8_t fin;
    uint8_t mask[4];
    uint8_t mask_offset;
    uint8_t message_opcode;  /* TEXT or BINARY while a fragmented message is open, else 0 */
    uint8_t control_fill;
    uint64_t payload_due;
    uint64_t message_length; /* bytes of the current message so far */
    uint32_t utf8;
    uint8_t control[125];
} vrs__frame_reader;

/* Reasons for ending a connection, as close codes. */
enum {
    VRS__CLOSE_NORMAL = 1000,
    VRS__CLOSE_GOING_AWAY = 1001,
    VRS__CLOSE_PROTOCOL_ERROR = 1002,
    VRS__CLOSE_NO_STATUS = 1005,
    VRS__CLOSE_ABNORMAL = 1006,
    VRS__CLOSE_INVALID_DATA = 1007,
    VRS__CLOSE_TOO_BIG = 1009,
    VRS__CLOSE_TRY_AGAIN_LATER = 1013
};

/* ---------------------------------------------------------------------------------------------
   The block pool: fixed-size blocks shared by every connection for bytes that wait (queued to
   send, or received and not yet a whole message). Free blocks are a LIFO list, so the memory
   that is touched is the peak in use, not the sum of every connection's worst case.
   ------------------------------------------------------------------------------------------- */

typedef struct vrs__chain {
    uint32_t head, tail;    /* block indexes, VRS__NONE when empty */
    uint32_t head_offset;   /* first unconsumed byte in head */
    uint32_t tail_fill;     /* bytes used in tail */
    size_t length;          /* bytes held */
} vrs__chain;

typedef struct vrs__pool {
    uint8_t *data;          /* block_count * VRS_BLOCK_SIZE bytes */
    uint32_t *next;         /* next block in a chain, or in the free list */
    uint32_t free_head;
    uint32_t block_count;
    uint32_t free_count;
    uint32_t inbound_used;  /* blocks holding received bytes */
} vrs__pool;

static void vrs__chain_init(vrs__chain *chain) {
    chain->head = chain->tail = VRS__NONE;
    chain->head_offset = chain->tail_fill = 0;
    chain->length = 0;
}

static size_t vrs__chain_blocks_needed(const vrs__chain *chain, size_t length) {
    size_t room = chain->tail == VRS__NONE ? 0 : VRS_BLOCK_SIZE - chain->tail_fill;
    return length <= room ? 0 : (length - room + VRS_BLOCK_SIZE - 1) / VRS_BLOCK_SIZE;
}

static uint32_t vrs__pool_take(vrs__pool *pool) {
    uint32_t block = pool->free_head;
    VRS_ASSERT(block != VRS__NONE);
    pool->free_head = pool->next[block];
    pool->next[block] = VRS__NONE;
    pool->free_count--;
    return block;
}

static void vrs__pool_give(vrs__pool *pool, uint32_t block) {
    pool->next[block] = pool->free_head;
    pool->free_head = block;
    pool->free_count++;
}

/* Appends all of the bytes, or none when the pool lacks blocks (the caller checked first). */
static void vrs__chain_append(vrs__pool *pool, vrs__chain *chain, const void *bytes, size_t length) {
    const uint8_t *p = VRS__CAST(const uint8_t *, bytes);
    while (length > 0) {
        size_t take;
        if (chain->tail == VRS__NONE || chain->tail_fill == VRS_BLOCK_SIZE) {
            uint32_t block = vrs__pool_take(pool);
            if (chain->tail == VRS__NONE) {
                chain->head = block;
                chain->head_offset = 0;
            } else {
                pool->next[chain->tail] = block;
            }
            chain->tail = block;
            chain->tail_fill = 0;
        }
        take = VRS_BLOCK_SIZE - chain->tail_fill;
        if (take > length) take = length;
        VRS_MEMCPY(pool->data + (size_t)chain->tail * VRS_BLOCK_SIZE + chain->tail_fill, p, take);
        chain->tail_fill += (uint32_t)take;
        chain->length += take;
        p += take;
        length -= take;
    }
}

/* Takes `length` bytes at the end of the chain when the block it ends with holds them, and
   returns where they start, for the caller to fill; NULL, taking nothing, otherwise. */
static uint8_t *vrs__chain_extend_tail(vrs__pool *pool, vrs__chain *chain, size_t length) {
    uint8_t *at;
    if (chain->tail == VRS__NONE || VRS_BLOCK_SIZE - chain->tail_fill < length) return NULL;
    at = pool->data + (size_t)chain->tail * VRS_BLOCK_SIZE + chain->tail_fill;
    chain->tail_fill += (uint32_t)length;
    chain->length += length;
    return at;
}

/* Drops `length` bytes from the front, handing emptied blocks back. Returns blocks freed. */
static uint32_t vrs__chain_consume(vrs__pool *pool, vrs__chain *chain, size_t length) {
    uint32_t freed = 0;
    while (length > 0 && chain->head != VRS__NONE) {
        size_t in_head = (chain->head == chain->tail ? chain->tail_fill : VRS_BLOCK_SIZE) - chain->head_offset;
        if (length < in_head) {
            chain->head_offset += (uint32_t)length;
            chain->length -= length;
            return freed;
        }
        length -= in_head;
        chain->length -= in_head;
        {
            uint32_t block = chain->head, next = pool->next[block];
            vrs__pool_give(pool, block);
            freed++;
            if (block == chain->tail) {
                vrs__chain_init(chain);
            } else {
                chain->head = next;
                chain->head_offset = 0;
            }
        }
    }
    return freed;
}

static uint32_t vrs__chain_clear(vrs__pool *pool, vrs__chain *chain) {
    return vrs__chain_consume(pool, chain, chain->length);
}

/* Copies every byte held into `out` (which has room for chain->length). */
static void vrs__chain_gather(const vrs__pool *pool, const vrs__chain *chain, uint8_t *out) {
    uint32_t block = chain->head, offset = chain->head_offset;
    while (block != VRS__NONE) {
        uint32_t end = block == chain->tail ? chain->tail_fill : VRS_BLOCK_SIZE;
        VRS_MEMCPY(out, pool->data + (size_t)block * VRS_BLOCK_SIZE + offset, end - offset);
        out += end - offset;
        if (block == chain->tail) break;
        block = pool->next[block];
        offset = 0;
    }
}

/* Fills up to `capacity` iovecs with the bytes held, front first. Returns how many. */
static int vrs__chain_iov(const vrs__pool *pool, const vrs__chain *chain, vrs__iovec *iov, int capacity) {
    uint32_t block = chain->head, offset = chain->head_offset;
    int count = 0;
    while (block != VRS__NONE && count < capacity) {
        uint32_t end = block == chain->tail ? chain->tail_fill : VRS_BLOCK_SIZE;
        vrs__iov_set(&iov[count], pool->data + (size_t)block * VRS_BLOCK_SIZE + offset, end - offset);
        count++;
        if (block == chain->tail) break;
        block = pool->next[block];
        offset = 0;
    }
    return count;
}

/* ---------------------------------------------------------------------------------------------
   Connections and the server
   ------------------------------------------------------------------------------------------- */

typedef enum vrs__state {
    VRS__FREE = 0,
    VRS__READING_REQUEST, /* accepted; the request head is arriving */
    VRS__OPEN,            /* a WebSocket */
    VRS__CLOSING,         /* we sent close and wait for the peer's */
    VRS__DRAINING         /* done: flush what is queued, end TCP, wait for the peer's end */
} vrs__state;

typedef struct vrs__conn {
    uint64_t generation;     /* of the slot: bumped once for every new owner */
    vrs__socket fd;
    uint8_t state;
    uint8_t announced;       /* on_open was called, so on_close is owed */
    uint8_t handle_ended;    /* on_close was called: the handle is stale, even while draining */
    uint8_t close_owed;      /* on_close is due at the end of this step */
    uint8_t shutdown_sent;   /* our side of TCP is closed */
    uint8_t dead;            /* release the socket at the end of this step */
    uint8_t is_rejection;    /* occupies a reject slot (503) */
    uint8_t want_write;      /* bytes are queued that the socket did not take */
    uint8_t dirty;           /* on the list of connections to flush */
    uint8_t watching_write;  /* epoll: EPOLLOUT is registered */
    uint8_t watching_read;   /* epoll: EPOLLIN is registered */
    uint8_t paused;          /* not read: a client its messages reach is congested */
    uint8_t ready;           /* on the list of resumed connections with held bytes */
    uint8_t attention;       /* on the list for the end-of-step pass */
    uint8_t head_request;    /* the request being answered is HEAD: no body */
    uint16_t close_code;     /* sent or received: what on_close reports */
    uint8_t phoenix;         /* a Phoenix socket: messages go to its channels */
    uint8_t vsn;             /* its serializer: 1 (objects) or 2 (arrays, binary) */
    uint32_t channel_count;  /* as wide as max_channels_per_socket can be */
    uint16_t url_room_length; /* a Phoenix socket whose URL named a room: its id's length */
    uint32_t url_room_hash;   /* and hash; it may join only that room (0 length: any room) */
    uint32_t first_channel;  /* its channels, linked through next_in_conn */
    uint32_t active_position;
    uint32_t next_dirty;
    uint32_t next_attention;
    /* Flow control: a paused sender waits in the list of one receiver (blocked_on), the
       fullest congested queue its messages reached */
    uint32_t blocked_on;     /* the receiver's slot, VRS__NONE while reading */
    uint32_t first_waiter;   /* as a receiver: the senders waiting for its queue to drain */
    uint32_t next_waiter, previous_waiter;
    uint32_t next_ready;
    int64_t deadline_ms;     /* the earliest of the state's timers */
    int64_t idle_deadline_ms;
    int64_t progress_ms;     /* when the queue last took bytes, or had its first */
    vrs__chain inbound;      /* request head bytes, or the unfinished message's payload */
    vrs__chain held;         /* bytes read, not yet parsed, when the connection was paused */
    vrs__chain outbound;
    vrs__frame_reader reader;
    void *user_data;
    char remote_address[64];
} vrs__conn;

struct vrs_server {
    vrs_desc desc;               /* defaults resolved */
    vrs__socket listen_fd;
    int port;
    int owns_memory;
    void *memory;
    vrs__conn *conns;            /* max_connections + VRS_REJECT_SLOTS slots */
    uint32_t slot_count;
    uint32_t *free_slots;        /* stack of free slot indexes */
    uint32_t free_slot_count;
    uint32_t *active;            /* dense list of used slots, for polling */
    uint32_t active_count;
    int open_count;              /* connections counted against max_connections */
    int rejection_count;
    vrs_pollfd *pollfds;
    vrs__pool pool;
    uint8_t *read_buffer;        /* VRS__READ_BUFFER_SIZE */
    uint8_t *assembly;           /* max(max_message_size, max_request_size) */
    size_t assembly_size;
    uint32_t dirty_head;         /* connections with bytes to flush */
    uint32_t attention_head;     /* connections for the end-of-step pass */
    uint32_t ready_head;         /* resumed connections whose held bytes wait to be parsed */
    uint32_t pool_waiters;       /* senders paused until the pool has room again */
    vrs__conn *sender;           /* the connection whose message is being dispatched */
    int64_t now_ms;
    int64_t next_timer_ms;       /* no deadline falls before this */
    int64_t accept_paused_until_ms;
    size_t queue_limit;          /* the hard cap of one send queue */
    int websocket_count;
    int draining;                /* vrs_drain: upgrades are answered 503 */
    uint64_t messages_received, messages_sent;
    uint64_t connections_accepted, bytes_received, bytes_sent;
    uint64_t closes_by_code[VRS_STATS_CLOSE_CODES], closes_other_code;
    uint64_t log_counts[VRS_LOG_ITEM_COUNT];
    uint64_t join_failures[VRS_JOIN_FAILURE_COUNT];
    /* Phoenix channels and rooms */
    struct vrs__channel *channels;   /* max_channels */
    uint32_t *free_channels;
    uint32_t free_channel_count;
    int channel_count;
    struct vrs__room *rooms;         /* max_rooms */
    uint32_t *free_rooms;
    uint32_t free_room_count;
    int room_count;
    uint32_t *room_buckets;          /* hash chains of rooms by id */
    uint32_t room_bucket_mask;
    char *room_ids;                  /* max_rooms * (max_room_id_size + 1) */
    char *relay_inner, *relay_outer, *relay_decoded;
    size_t relay_inner_size, relay_outer_size, relay_decoded_size;
    size_t topic_json_length;
    size_t random_fill, random_used;
    uint64_t topic_key;              /* the room handle topic_json is for; 0: none */
    int random_fd;
    uint32_t paused_count;           /* connections not read while queues drain */
    char topic_json[1560];           /* "room:<id>" as JSON: at most 6 bytes a byte of 255 */
    uint8_t random_pool[512];
    vrs__socket wake_fds[2];                 /* read end, write end: one eventfd twice on Linux */
#ifdef VRS_USE_EPOLL
    int epoll_fd;
    int listener_watched;            /* the listener is in the epoll set (not paused) */
    struct epoll_event ready[256];
#endif
};

static void vrs__phoenix_message(vrs_server *server, vrs__conn *conn, int opcode, const uint8_t *data,
                                 size_t length);
static void vrs__phoenix_handshake(vrs_server *server, vrs__conn *conn, const vrs_request *request);
static void vrs__phoenix_socket_ended(vrs_server *server, vrs__conn *conn);

/* A log line through `logger` (VRS_DEFAULT_LOG when it is NULL or has no function): also
   before a server exists, for what is wrong with a description. */
static void vrs__log_to(const vrs_logger *logger, vrs_log_item item, const char *detail) {
    char message[256];
    vrs_log_level level = vrs__log_item_level(item);
    if (detail && detail[0])
        snprintf(message, sizeof message, "%s (%s)", vrs__log_item_text(item), detail);
    else
        snprintf(message, sizeof message, "%s", vrs__log_item_text(item));
    if (logger && logger->func)
        logger->func(level, item, message, logger->user_data);
    else
        VRS_DEFAULT_LOG(level, item, message);
}

static void vrs__log(vrs_server *server, vrs_log_item item, const char *detail) {
    server->log_counts[item]++;
    vrs__log_to(&server->desc.logger, item, detail);
}

/* Handle ids of every kind: what names slot `index` while its generation is `generation`. */
static uint64_t vrs__handle_id(uint64_t generation, size_t index) {
    return generation << VRS__INDEX_BITS | ((uint64_t)index + 1);
}

/* The slot a handle id names, counted from 1 (0: none); whether it is of the slot's owner now. */
static uint32_t vrs__handle_slot(uint64_t id) { return (uint32_t)(id & VRS__INDEX_MASK); }
static int vrs__handle_is_current(uint64_t id, uint64_t generation) { return (id >> VRS__INDEX_BITS) == generation; }

/* A slot's next owner gets the next generation; 0 when the slot must be retired instead. */
static int vrs__next_generation(uint64_t *generation) {
    *generation += 1;
    return *generation < VRS__GENERATION_LIMIT;
}

static vrs_conn vrs__handle(const vrs_server *server, const vrs__conn *conn) {
    vrs_conn handle;
    handle.id = vrs__handle_id(conn->generation, (size_t)(conn - server->conns));
    return handle;
}

static vrs__conn *vrs__lookup(vrs_server *server, vrs_conn handle) {
    uint32_t index = vrs__handle_slot(handle.id);
    vrs__conn *conn;
    if (!server || index == 0 || index > server->slot_count) return NULL;
    conn = &server->conns[index - 1];
    if (conn->state == VRS__FREE || conn->handle_ended || !vrs__handle_is_current(handle.id, conn->generation))
        return NULL;
    return conn;
}

static void vrs__set_deadline(vrs_server *server, vrs__conn *conn, int64_t deadline_ms) {
    conn->deadline_ms = deadline_ms;
    if (deadline_ms < server->next_timer_ms) server->next_timer_ms = deadline_ms;
}

/* What the socket is watched for: reading unless the connection is paused, writing while
   bytes wait that it did not take. poll() is asked every step; epoll is told of changes. */
static void vrs__watch(vrs_server *server, vrs__conn *conn) {
#ifdef VRS_USE_EPOLL
    uint8_t read = (uint8_t)!conn->paused;
    if (conn->watching_read != read || conn->watching_write != conn->want_write) {
        struct epoll_event event;
        VRS_MEMSET(&event, 0, sizeof event);
        event.events = (read ? (uint32_t)EPOLLIN : 0u) | (conn->want_write ? (uint32_t)EPOLLOUT : 0u);
        event.data.u32 = (uint32_t)(conn - server->conns);
        if (epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event) == 0) {
            conn->watching_read = read;
            conn->watching_write = conn->want_write;
        }
    }
#else
    (void)server;
    (void)conn;
#endif
}

/* ---- Flow control ----
   A message from a client (the sender) may queue bytes for a client whose queue is past the
   high-water mark. The sender is then no longer read, and TCP slows it down as it would with
   a relay built on the kernel, until that queue drains under the low-water mark (half the
   high). A queue passes the mark by what was in flight: at most one message from each
   sender not yet paused. The shared pool is guarded the same way: with less than a quarter
   of it free, every sender is paused before its next message until three eighths are free.
   Messages are dispatched one at a time, so only the one under way can pass that mark.
   Nothing is dropped for a client that reads. */

static int vrs__pool_strained(const vrs_server *server) {
    return server->pool.free_count < server->pool.block_count / 2;
}

/* While some queue is congested (a sender is paused) or the pool is strained, bytes are
   peeked rather than read, so that a sender paused in the middle of what it sent leaves the
   rest in the kernel. Otherwise one read is taken at once, as it costs one system call, not
   two; should it pause its sender, the rest is held in the pool. So only one connection holds
   bytes at a time: the first to be paused (held bytes are kept while they wait to be parsed). */
static int vrs__should_peek(const vrs_server *server) {
    return server->paused_count > 0 || server->ready_head != VRS__NONE || vrs__pool_strained(server);
}

static int vrs__pool_tight(const vrs_server *server) {
    return server->pool.free_count < server->pool.block_count / 4;
}

/* send_queue_size; with less than half the pool free, it falls with what is left. */
static size_t vrs__high_water(const vrs_server *server) {
    uint64_t high = (uint64_t)server->desc.send_queue_size;
    uint32_t half = server->pool.block_count / 2;
    if (server->pool.free_count < half) high = high * server->pool.free_count / half;
    return (size_t)high;
}

/* The list a paused sender waits in: its receiver's, or the pool's. */
static uint32_t *vrs__waiters_of(vrs_server *server, uint32_t blocked_on) {
    return blocked_on == VRS__POOL_WAIT ? &server->pool_waiters : &server->conns[blocked_on].first_waiter;
}

static void vrs__unlink_waiter(vrs_server *server, vrs__conn *sender) {
    if (sender->previous_waiter != VRS__NONE)
        server->conns[sender->previous_waiter].next_waiter = sender->next_waiter;
    else
        *vrs__waiters_of(server, sender->blocked_on) = sender->next_waiter;
    if (sender->next_waiter != VRS__NONE)
        server->conns[sender->next_waiter].previous_waiter = sender->previous_waiter;
    sender->blocked_on = VRS__NONE;
}

/* Stops reading `sender` until the queue of the connection in slot `blocked_on` drains, or
   the pool has room (VRS__POOL_WAIT). A sender already waiting on a queue waits on the
   fuller one, the one likely to drain last. */
static void vrs__pause(vrs_server *server, vrs__conn *sender, uint32_t blocked_on) {
    uint32_t *waiters, sender_slot = (uint32_t)(sender - server->conns);
    if (sender->state != VRS__OPEN || sender->dead) return;
    if (sender->blocked_on != VRS__NONE) {
        if (sender->blocked_on == VRS__POOL_WAIT || blocked_on == VRS__POOL_WAIT ||
            server->conns[sender->blocked_on].outbound.length >= server->conns[blocked_on].outbound.length)
            return;
        vrs__unlink_waiter(server, sender);
    }
    waiters = vrs__waiters_of(server, blocked_on);
    sender->blocked_on = blocked_on;
    sender->previous_waiter = VRS__NONE;
    sender->next_waiter = *waiters;
    if (*waiters != VRS__NONE) server->conns[*waiters].previous_waiter = sender_slot;
    *waiters = sender_slot;
    if (!sender->paused) {
        sender->paused = 1;
        server->paused_count++;
        vrs__watch(server, sender);
    }
}

/* Reads `sender` again; the bytes it held are parsed at the end of the step. */
static void vrs__resume(vrs_server *server, vrs__conn *sender) {
    if (sender->blocked_on != VRS__NONE) vrs__unlink_waiter(server, sender);
    if (!sender->paused) return;
    sender->paused = 0;
    server->paused_count--;
    vrs__watch(server, sender);
    if (sender->held.length > 0 && !sender->ready) {
        sender->ready = 1;
        sender->next_ready = server->ready_head;
        server->ready_head = (uint32_t)(sender - server->conns);
    }
}

static void vrs__resume_waiters(vrs_server *server, vrs__conn *receiver) {
    while (receiver->first_waiter != VRS__NONE) vrs__resume(server, &server->conns[receiver->first_waiter]);
}

/* Blocks came back: with three eighths of the pool free, the senders waiting for it resume. */
static void vrs__pool_recovered(vrs_server *server) {
    if (server->pool_waiters == VRS__NONE || server->pool.free_count < server->pool.block_count / 8 * 3) return;
    while (server->pool_waiters != VRS__NONE) vrs__resume(server, &server->conns[server->pool_waiters]);
}

/* The connection closes or goes: whoever waited for its queue resumes at once, and it no
   longer waits itself. */
static void vrs__leave_flow(vrs_server *server, vrs__conn *conn) {
    vrs__resume_waiters(server, conn);
    vrs__resume(server, conn);
}

/* An open connection's timer: the idle timeout, or its queue's, which fires when bytes have
   waited and the client took none of them for slow_consumer_timeout_ms. */
static int64_t vrs__open_deadline(const vrs_server *server, const vrs__conn *conn) {
    int64_t stalled = conn->outbound.length ? conn->progress_ms + server->desc.slow_consumer_timeout_ms : INT64_MAX;
    return stalled < conn->idle_deadline_ms ? stalled : conn->idle_deadline_ms;
}

/* Bytes are about to wait in an empty queue: the client's progress is counted from now. */
static void vrs__queue_starts(vrs_server *server, vrs__conn *conn) {
    int64_t stalled = server->now_ms + server->desc.slow_consumer_timeout_ms;
    conn->progress_ms = server->now_ms;
    if (conn->state == VRS__OPEN && stalled < conn->deadline_ms) vrs__set_deadline(server, conn, stalled);
}

static void vrs__mark_dirty(vrs_server *server, vrs__conn *conn) {
    if (conn->dirty) return;
    conn->dirty = 1;
    conn->next_dirty = server->dirty_head;
    server->dirty_head = (uint32_t)(conn - server->conns);
}

/* Connections that need the end-of-step pass: an on_close owed, or a socket to release. */
static void vrs__needs_attention(vrs_server *server, vrs__conn *conn) {
    if (conn->attention) return;
    conn->attention = 1;
    conn->next_attention = server->attention_head;
    server->attention_head = (uint32_t)(conn - server->conns);
}

static void vrs__owe_close(vrs_server *server, vrs__conn *conn, int code) {
    if (conn->state == VRS__OPEN || conn->state == VRS__CLOSING) {
        conn->close_code = (uint16_t)code;
        if (conn->announced) conn->close_owed = 1;
        vrs__needs_attention(server, conn);
    }
}

static void vrs__inbound_clear(vrs_server *server, vrs__conn *conn) {
    server->pool.inbound_used -= vrs__chain_clear(&server->pool, &conn->inbound);
    server->pool.inbound_used -= vrs__chain_clear(&server->pool, &conn->held);
}

/* Drops the connection at the end of this step; on_close (if owed) reports `code`. */
static void vrs__kill(vrs_server *server, vrs__conn *conn, int code) {
    vrs__owe_close(server, conn, code);
    vrs__leave_flow(server, conn);
    conn->dead = 1;
    vrs__needs_attention(server, conn);
}

/* The WebSocket is over from the host's point of view: queued bytes still go out, then our
   side of TCP closes, and the socket lingers until the peer ends it or close_timeout passes. */
static void vrs__finish(vrs_server *server, vrs__conn *conn, int code) {
    vrs__owe_close(server, conn, code);
    conn->state = VRS__DRAINING;
    vrs__leave_flow(server, conn);
    vrs__inbound_clear(server, conn); /* received bytes are no longer wanted */
    vrs__set_deadline(server, conn, server->now_ms + server->desc.close_timeout_ms);
    vrs__mark_dirty(server, conn);
}

/* Reserves room for `length` outbound bytes. A client whose queue would pass the hard cap is
   a slow consumer, and an empty pool cannot hold the bytes: both end that client alone. */
typedef enum vrs__space { VRS__SPACE_OK, VRS__SPACE_QUEUE_FULL, VRS__SPACE_POOL_EMPTY } vrs__space;

static vrs__space vrs__outbound_space(vrs_server *server, vrs__conn *conn, size_t length, int is_close) {
    size_t needed = vrs__chain_blocks_needed(&conn->outbound, length);
    if (!is_close && conn->outbound.length + length > server->queue_limit)
        return VRS__SPACE_QUEUE_FULL;
    if (needed > server->pool.free_count) return VRS__SPACE_POOL_EMPTY;
    return VRS__SPACE_OK;
}

static void vrs__queue_bytes(vrs_server *server, vrs__conn *conn, const void *bytes, size_t length) {
    if (conn->outbound.length == 0) vrs__queue_starts(server, conn);
    vrs__chain_append(&server->pool, &conn->outbound, bytes, length);
    vrs__mark_dirty(server, conn);
}

static void vrs__queue_frame_unchecked(vrs_server *server, vrs__conn *conn, int opcode,
                                       const void *payload, size_t length) {
    uint8_t header[10];
    size_t header_length = vrs__frame_header(header, opcode, length);
    vrs__queue_bytes(server, conn, header, header_length);
    if (length) vrs__queue_bytes(server, conn, payload, length);
}

/* Sends a close frame (code 0: an empty close) and moves to `next_state`. */
static void vrs__send_close(vrs_server *server, vrs__conn *conn, int code, const char *reason,
                            size_t reason_length) {
    uint8_t payload[125];
    size_t length = 0;
    if (code) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        length = 2;
        if (reason_length > 123) reason_length = 123;
        if (reason_length) VRS_MEMCPY(payload + 2, reason, reason_length);
        length += reason_length;
    }
    if (vrs__outbound_space(server, conn, length + 2, 1) != VRS__SPACE_OK) {
        vrs__kill(server, conn, code ? code : VRS__CLOSE_NO_STATUS); /* not even a close fits: drop */
        return;
    }
    vrs__queue_frame_unchecked(server, conn, VRS__OP_CLOSE, payload, length);
}

/* Fails the WebSocket connection (RFC 6455 section 7.1.7): close frame, then end TCP. */
static void vrs__fail(vrs_server *server, vrs__conn *conn, int code, vrs_log_item item) {
    vrs__log(server, item, conn->remote_address);
    if (conn->state == VRS__OPEN || conn->state == VRS__CLOSING) {
        if (conn->state == VRS__OPEN) vrs__send_close(server, conn, code, NULL, 0);
        vrs__finish(server, conn, code);
    }
}

/* Server-initiated close: send close and wait (close_timeout_ms) for the peer's. */
static void vrs__start_close(vrs_server *server, vrs__conn *conn, int code, const char *reason) {
    if (conn->state != VRS__OPEN) return;
    vrs__send_close(server, conn, code, reason, reason ? strlen(reason) : 0);
    if (conn->dead) return;
    conn->state = VRS__CLOSING;
    conn->close_code = (uint16_t)code;
    vrs__leave_flow(server, conn);
    vrs__set_deadline(server, conn, server->now_ms + server->desc.close_timeout_ms);
    vrs__needs_attention(server, conn);
}

/* Closes a client that takes no bytes, or cannot be given more, with 1013: it alone goes.
   The close frame waits behind its queue; when the pool is strained the queue is dropped
   with the socket instead, so that its blocks come back at once. */
static void vrs__close_slow_consumer(vrs_server *server, vrs__conn *conn, vrs_log_item item) {
    vrs__log(server, item, conn->remote_address);
    if (vrs__pool_strained(server) && conn->outbound.length > 0) {
        vrs__chain_clear(&server->pool, &conn->outbound); /* it may end inside a frame: no close frame can follow */
        vrs__kill(server, conn, VRS__CLOSE_TRY_AGAIN_LATER);
        return;
    }
    vrs__send_close(server, conn, VRS__CLOSE_TRY_AGAIN_LATER, NULL, 0);
    vrs__finish(server, conn, VRS__CLOSE_TRY_AGAIN_LATER);
}

/* The pool has no block left for `conn`. The connection holding the most queued bytes is the
   one not reading: it is dropped, and its blocks come back at once, rather than whoever
   happens to be sent to next. Returns 1 when blocks were freed. */
static int vrs__evict_largest_queue(vrs_server *server, const vrs__conn *conn) {
    vrs__conn *largest = NULL;
    uint32_t i;
    for (i = 0; i < server->active_count; i++) {
        vrs__conn *other = &server->conns[server->active[i]];
        if (other != conn && !other->dead && (!largest || other->outbound.length > largest->outbound.length))
            largest = other;
    }
    if (!largest || largest->outbound.length <= conn->outbound.length) return 0;
    if (largest->state == VRS__OPEN) vrs__log(server, VRS_LOG_SLOW_CONSUMER, largest->remote_address);
    vrs__chain_clear(&server->pool, &largest->outbound); /* it may end inside a frame: no close frame can follow */
    vrs__kill(server, largest, VRS__CLOSE_TRY_AGAIN_LATER);
    return 1;
}

/* A piece of a frame's payload. Frames are queued from their pieces, so that a payload going
   to many clients is copied once for each, straight into its queue. */
typedef struct vrs__piece { const void *bytes; size_t length; } vrs__piece;

/* Queues a whole data or control frame, its payload given in pieces. */
static vrs_result vrs__queue_pieces(vrs_server *server, vrs__conn *conn, int opcode, const vrs__piece *pieces,
                                    int count) {
    size_t length = 0, header_length, total;
    uint8_t header[10], *out;
    vrs__space space;
    int i;
    if (conn->state != VRS__OPEN || conn->dead) return VRS_ERROR_NOT_OPEN; /* a dropped client queues nothing more */
    for (i = 0; i < count; i++) { /* summed against the limit, so that no length can wrap the sum */
        if (pieces[i].length > server->queue_limit - length) return VRS_ERROR_TOO_LARGE;
        length += pieces[i].length;
    }
    header_length = vrs__frame_header(header, opcode, length);
    total = header_length + length;
    if (total > server->queue_limit) return VRS_ERROR_TOO_LARGE;
    space = vrs__outbound_space(server, conn, total, 0);
    while (space == VRS__SPACE_POOL_EMPTY && vrs__evict_largest_queue(server, conn))
        space = vrs__outbound_space(server, conn, total, 0);
    if (space != VRS__SPACE_OK) {
        /* Its queue is full, or the pool is empty and no other queue is larger than its own:
           this client is the one not reading, unless it has nothing queued at all. */
        vrs_result refused = space == VRS__SPACE_POOL_EMPTY && conn->outbound.length == 0 ? VRS_ERROR_POOL_EXHAUSTED
                                                                                          : VRS_ERROR_SLOW_CONSUMER;
        vrs__close_slow_consumer(server, conn,
                                 refused == VRS_ERROR_SLOW_CONSUMER ? VRS_LOG_SLOW_CONSUMER : VRS_LOG_POOL_EXHAUSTED);
        return refused;
    }
    if (conn->outbound.length == 0) vrs__queue_starts(server, conn);
    if ((out = vrs__chain_extend_tail(&server->pool, &conn->outbound, total)) != NULL) {
        /* The usual case while a step fans events out: the frame fits in the block the queue
           ends with, and is written there in one go. */
        VRS_MEMCPY(out, header, header_length);
        out += header_length;
        for (i = 0; i < count; i++) {
            if (pieces[i].length) VRS_MEMCPY(out, pieces[i].bytes, pieces[i].length);
            out += pieces[i].length;
        }
    } else {
        vrs__chain_append(&server->pool, &conn->outbound, header, header_length);
        for (i = 0; i < count; i++)
            vrs__chain_append(&server->pool, &conn->outbound, pieces[i].bytes, pieces[i].length);
    }
    vrs__mark_dirty(server, conn);
    if (opcode == VRS__OP_TEXT || opcode == VRS__OP_BINARY) server->messages_sent++;
    if (server->sender && conn->outbound.length > vrs__high_water(server))
        vrs__pause(server, server->sender, (uint32_t)(conn - server->conns));
    return VRS_OK;
}

/* Queues a whole data or control frame from the host or the protocol layers. */
static vrs_result vrs__queue_frame(vrs_server *server, vrs__conn *conn, int opcode, const void *payload,
                                   size_t length) {
    vrs__piece piece;
    piece.bytes = payload;
    piece.length = length;
    return vrs__queue_pieces(server, conn, opcode, &piece, 1);
}

/* An HTTP response, after which the connection ends. Returns 0, and sends nothing, when the
   status line and headers do not fit VRS__RESPONSE_HEAD_SIZE: a body never goes without them. */
#define VRS__RESPONSE_HEAD_SIZE 1024
static int vrs__respond(vrs_server *server, vrs__conn *conn, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t length, int send_body) {
    char head[VRS__RESPONSE_HEAD_SIZE];
    int head_length = snprintf(head, sizeof head,
                               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %lu\r\n"
                               "Connection: close\r\n%s\r\n",
                               status, vrs__http_reason(status), content_type, (unsigned long)length,
                               extra_headers ? extra_headers : "");
    if (head_length < 0 || (size_t)head_length >= sizeof head) {
        vrs__log(server, VRS_LOG_RESPONSE_HEAD_TOO_LARGE, conn->remote_address);
        return 0;
    }
    if (vrs__chain_blocks_needed(&conn->outbound, (size_t)head_length + (send_body ? length : 0)) <=
        server->pool.free_count) {
        vrs__queue_bytes(server, conn, head, (size_t)head_length);
        if (send_body && length) vrs__queue_bytes(server, conn, body, length);
    }
    vrs__finish(server, conn, 0);
    return 1;
}

static void vrs__respond_error(vrs_server *server, vrs__conn *conn, int status, const char *extra_headers) {
    char body[64];
    int length = snprintf(body, sizeof body, "%d %s\n", status, vrs__http_reason(status));
    (void)vrs__respond(server, conn, status, "text/plain; charset=utf-8", extra_headers, body,
                       length > 0 ? (size_t)length : 0, !conn->head_request);
}

/* Whether the socket's readiness to write matters: only while bytes wait that it did not
   take, so that an idle connection never wakes the server. */
static void vrs__set_want_write(vrs_server *server, vrs__conn *conn, int want) {
    conn->want_write = (uint8_t)want;
    vrs__watch(server, conn);
}

/* Writes what is queued with as few system calls as the socket allows. */
static void vrs__flush(vrs_server *server, vrs__conn *conn) {
    while (conn->outbound.length > 0 && !conn->dead) {
        vrs__iovec iov[VRS__IOV_BATCH];
        ptrdiff_t written = vrs__send_iov(conn->fd, iov, vrs__chain_iov(&server->pool, &conn->outbound, iov, VRS__IOV_BATCH));
        if (written < 0) {
            vrs__io_error error = vrs__last_io_error();
            if (error == VRS__IO_RETRY) continue;
            if (error == VRS__IO_WOULD_BLOCK) {
                vrs__set_want_write(server, conn, 1);
                return;
            }
            vrs__kill(server, conn, VRS__CLOSE_ABNORMAL);
            return;
        }
        vrs__chain_consume(&server->pool, &conn->outbound, (size_t)written);
        server->bytes_sent += (uint64_t)written;
        conn->progress_ms = server->now_ms;
        if (conn->first_waiter != VRS__NONE && conn->outbound.length <= vrs__high_water(server) / 2)
            vrs__resume_waiters(server, conn);
        vrs__pool_recovered(server);
    }
    if (conn->want_write) vrs__set_want_write(server, conn, 0);
    if (conn->state == VRS__DRAINING && !conn->shutdown_sent && !conn->dead) {
        /* Half-close, then wait for the peer's end: closing outright with unread input would
           send a reset that can destroy the last bytes we wrote before the peer reads them. */
        shutdown(conn->fd, VRS__SHUT_WR);
        conn->shutdown_sent = 1;
    }
}

static void vrs__flush_dirty(vrs_server *server) {
    while (server->dirty_head != VRS__NONE) {
        vrs__conn *conn = &server->conns[server->dirty_head];
        server->dirty_head = conn->next_dirty;
        conn->dirty = 0;
        if (conn->state != VRS__FREE) vrs__flush(server, conn);
    }
}

/* ---------------------------------------------------------------------------------------------
   Receiving: request heads, then frames
   ------------------------------------------------------------------------------------------- */

static void vrs__deliver(vrs_server *server, vrs__conn *conn, int opcode, const uint8_t *data,
                         size_t length) {
    server->messages_received++;
    if (conn->phoenix)
        vrs__phoenix_message(server, conn, opcode, data, length);
    else if (server->desc.on_message)
        server->desc.on_message(server, vrs__handle(server, conn), (vrs_message_type)opcode, data,
                                length, server->desc.user_data);
}

/* Keeps received bytes until their message is whole. At most half of the pool may hold
   received bytes, so that senders of large messages cannot starve everyone's replies. */
static int vrs__inbound_append(vrs_server *server, vrs__conn *conn, const void *bytes, size_t length) {
    size_t needed = vrs__chain_blocks_needed(&conn->inbound, length);
    if (needed > server->pool.free_count || server->pool.inbound_used + needed > server->pool.block_count / 2) {
        vrs__log(server, VRS_LOG_POOL_EXHAUSTED, conn->remote_address);
        if (conn->state == VRS__OPEN) vrs__send_close(server, conn, VRS__CLOSE_TRY_AGAIN_LATER, NULL, 0);
        if (conn->state == VRS__OPEN || conn->state == VRS__CLOSING)
            vrs__finish(server, conn, VRS__CLOSE_TRY_AGAIN_LATER);
        else
            vrs__respond_error(server, conn, 503, NULL);
        return 0;
    }
    server->pool.inbound_used += (uint32_t)needed;
    vrs__chain_append(&server->pool, &conn->inbound, bytes, length);
    return 1;
}

static void vrs__handle_control(vrs_server *server, vrs__conn *conn) {
    vrs__frame_reader *r = &conn->reader;
    if (r->opcode == VRS__OP_PING) {
        if (conn->state == VRS__OPEN) vrs__queue_frame(server, conn, VRS__OP_PONG, r->control, r->control_fill);
    } else if (r->opcode == VRS__OP_CLOSE) {
        int code = VRS__CLOSE_NO_STATUS;
        if (r->control_fill == 1) {
            vrs__fail(server, conn, VRS__CLOSE_PROTOCOL_ERROR, VRS_LOG_PROTOCOL_ERROR);
            return;
        }
        if (r->control_fill >= 2) {
            code = r->control[0] << 8 | r->control[1];
            if (!vrs__close_code_is_valid(code)) {
                vrs__fail(server, conn, VRS__CLOSE_PROTOCOL_ERROR, VRS_LOG_PROTOCOL_ERROR);
                return;
            }
            if (!vrs__utf8_is_valid(r->control + 2, (size_t)r->control_fill - 2)) {
                vrs__fail(server, conn, VRS__CLOSE_INVALID_DATA, VRS_LOG_INVALID_UTF8);
                return;
            }
        }
        if (conn->state == VRS__OPEN) {
            /* echo the code (an empty close is echoed empty) */
            vrs__send_close(server, conn, code == VRS__CLOSE_NO_STATUS ? 0 : code, NULL, 0);
            vrs__finish(server, conn, code);
        } else {
            vrs__finish(server, conn, conn->close_code); /* the answer to our close */
        }
    }
    /* a pong needs nothing */
}

/* Validates a frame header once its first two bytes are in; returns the full header length
   (2 to 14), or 0 after failing the connection. */
static int vrs__frame_header_length(vrs_server *server, vrs__conn *conn) {
    vrs__frame_reader *r = &conn->reader;
    int opcode = r->header[0] & 0x0F, length7 = r->header[1] & 0x7F;
    if ((r->header[0] & 0x70) || !(r->header[1] & 0x80) ||
        (opcode > VRS__OP_BINARY && opcode < VRS__OP_CLOSE) || opcode > VRS__OP_PONG) {
        vrs__fail(server, conn, VRS__CLOSE_PROTOCOL_ERROR, VRS_LOG_PROTOCOL_ERROR);
        return 0;
    }
    if (opcode >= VRS__OP_CLOSE && (!(r->header[0] & 0x80) || length7 > 125)) {
        vrs__fail(server, conn, VRS__CLOSE_PROTOCOL_ERROR, VRS_LOG_PROTOCOL_ERROR);
        return 0;
    }
    if (opcode == VRS__OP_CONTINUATION ? r->message_opcode == 0
                                       : (opcode < VRS__OP_CLOSE && r->message_opcode != 0)) {
        vrs__fail(server, conn, VRS__CLOSE_PROTOCOL_ERROR, VRS_LOG_PROTOCOL_ERROR);
        return 0;
    }
    return 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + 4;
}

/* The header is whole: checks the length rules and prepares for the payload. */
static int vrs__frame_begin(vrs_server *server, vrs__conn *conn) {
    vrs__frame_reader *r = &conn->reader;
    int length7 = r->header[1] & 0x7F, mask_at = 2;
    uint64_t length = (uint64_t)length7;
    if (length7 == 126) {
        length = (uint64_t)r->header[2] << 8 | r->header[3];
        mask_at = 4;
        if (length < 126) goto protocol_error;
    } else if (length7 == 127) {
        int i;
        length = 0;
        for (i = 0; i < 8; i++) length = length << 8 | r->header[2 + i];
        mask_at = 10;
        if ((length >> 63) || length <= 0xFFFF) goto protocol_error;
    }
    r->opcode = (uint8_t)(r->header[0] & 0x0F);
    r->fin = (uint8_t)(r->header[0] >> 7);
    VRS_MEMCPY(r->mask, r->header + mask_at, 4);
    r->mask_offset = 0;
    r->payload_due = length;
    r->control_fill = 0;
    r->in_payload = 1;
    if (r->opcode == VRS__OP_TEXT || r->opcode == VRS__OP_BINARY) {
        r->message_opcode = r->opcode;
        r->message_length = 0;
        r->utf8 = VRS__UTF8_ACCEPT;
    }
    if (r->opcode < VRS__OP_CLOSE && r->message_length + length > (uint64_t)server->desc.max_message_size) {
        vrs__fail(server, conn, VRS__CLOSE_TOO_BIG, VRS_LOG_MESSAGE_TOO_LARGE);
        return 0;
    }
    return 1;
protocol_error:
    vrs__fail(server, conn, VRS__CLOSE_PROTOCOL_ERROR, VRS_LOG_PROTOCOL_ERROR);
    return 0;
}

static void vrs__unmask(vrs__frame_reader *r, uint8_t *data, size_t length) {
    size_t i = 0;
    uint32_t mask32;
    uint8_t rotated[4];
    int k;
    for (k = 0; k < 4; k++) rotated[k] = r->mask[(r->mask_offset + k) & 3];
    VRS_MEMCPY(&mask32, rotated, 4);
#ifdef VRS__SSE2
    {
        __m128i mask128 = _mm_set1_epi32((int)mask32);
        for (; i + 16 <= length; i += 16) {
            __m128i *at = (__m128i *)(void *)(data + i);
            _mm_storeu_si128(at, _mm_xor_si128(_mm_loadu_si128(at), mask128));
        }
    }
#endif
    for (; i + 4 <= length; i += 4) {
        uint32_t word;
        VRS_MEMCPY(&word, data + i, 4);
        word ^= mask32;
        VRS_MEMCPY(data + i, &word, 4);
    }
    for (; i < length; i++) data[i] ^= rotated[i & 3];
    r->mask_offset = (uint8_t)((r->mask_offset + length) & 3);
}

/* The payload bytes of a frame: unmasked in place, UTF-8 checked as they arrive, delivered
   straight from the read buffer when a whole unfragmented message is there, else kept. */
static void vrs__frame_payload(vrs_server *server, vrs__conn *conn, uint8_t *data, size_t length) {
    vrs__frame_reader *r = &conn->reader;
    int whole_frame_here = length == r->payload_due;
    vrs__unmask(r, data, length);
    r->payload_due -= length;
    if (r->opcode >= VRS__OP_CLOSE) {
        VRS_MEMCPY(r->control + r->control_fill, data, length);
        r->control_fill = (uint8_t)(r->control_fill + length);
        return;
    }
    if (conn->state != VRS__OPEN) return; /* after our close, data is ignored */
    if (r->message_opcode == VRS__OP_TEXT) {
        r->utf8 = vrs__utf8_feed(r->utf8, data, length);
        if (r->utf8 == VRS__UTF8_REJECT) {
            vrs__fail(server, conn, VRS__CLOSE_INVALID_DATA, VRS_LOG_INVALID_UTF8);
            return;
        }
    }
    if (r->fin && whole_frame_here && r->message_length == 0 && conn->inbound.length == 0) {
        r->message_length = length; /* the whole message is here: no copy */
        if (r->message_opcode == VRS__OP_TEXT && r->utf8 != VRS__UTF8_ACCEPT) {
            vrs__fail(server, conn, VRS__CLOSE_INVALID_DATA, VRS_LOG_INVALID_UTF8);
            return;
        }
        r->opcode = r->message_opcode; /* a continuation, after an empty first fragment */
        r->message_opcode = 0;
        r->message_length = 0;
        vrs__deliver(server, conn, r->opcode, data, length);
        r->fin = 0; /* delivered: the frame's end has nothing left to do */
        r->opcode = VRS__OP_CONTINUATION;
        return;
    }
    r->message_length += length;
    if (length) vrs__inbound_append(server, conn, data, length);
}

/* The frame's last payload byte arrived. */
static void vrs__frame_end(vrs_server *server, vrs__conn *conn) {
    vrs__frame_reader *r = &conn->reader;
    r->in_payload = 0;
    r->header_fill = 0;
    if (r->opcode >= VRS__OP_CLOSE) {
        vrs__handle_control(server, conn);
        return;
    }
    if (!r->fin || r->message_opcode == 0) return; /* more fragments due, or delivered already */
    {
        int opcode = r->message_opcode;
        size_t length = conn->inbound.length;
        r->message_opcode = 0;
        r->message_length = 0;
        if (conn->state != VRS__OPEN) {
            vrs__inbound_clear(server, conn);
            return;
        }
        if (opcode == VRS__OP_TEXT && r->utf8 != VRS__UTF8_ACCEPT) {
            vrs__fail(server, conn, VRS__CLOSE_INVALID_DATA, VRS_LOG_INVALID_UTF8);
            return;
        }
        vrs__chain_gather(&server->pool, &conn->inbound, server->assembly);
        vrs__inbound_clear(server, conn);
        vrs__deliver(server, conn, opcode, server->assembly, length);
    }
}

/* Keeps the rest of what was read from a connection that a message just paused, to be parsed
   when it resumes. When the pool cannot spare the blocks, the rest is parsed now instead. */
static int vrs__hold(vrs_server *server, vrs__conn *conn, const uint8_t *data, size_t length) {
    size_t needed = vrs__chain_blocks_needed(&conn->held, length);
    if (needed > server->pool.free_count || server->pool.inbound_used + needed > server->pool.block_count / 2)
        return 0;
    server->pool.inbound_used += (uint32_t)needed;
    vrs__chain_append(&server->pool, &conn->held, data, length);
    return 1;
}

/* Feeds received bytes (which may be altered in place) through the frame reader, until they
   end or the connection is paused. The rest is then held, when `may_hold`, or left where it
   is (peeked bytes stay in the kernel): returns how many bytes were not parsed. */
static size_t vrs__read_frames(vrs_server *server, vrs__conn *conn, uint8_t *data, size_t length, int may_hold) {
    vrs__frame_reader *r = &conn->reader;
    while (length > 0 && (conn->state == VRS__OPEN || conn->state == VRS__CLOSING) && !conn->dead) {
        if (conn->state == VRS__OPEN && !conn->paused && server->sender == conn && vrs__pool_tight(server))
            vrs__pause(server, conn, VRS__POOL_WAIT);
        if (conn->paused) {
            if (!may_hold) return length;
            if (vrs__hold(server, conn, data, length)) return 0;
        }
        if (!r->in_payload) {
            int needed = r->header_fill < 2 ? 2 : vrs__frame_header_length(server, conn);
            if (needed == 0) return 0;
            while (r->header_fill < needed && length > 0) {
                r->header[r->header_fill++] = *data++;
                length--;
                if (r->header_fill == 2) {
                    needed = vrs__frame_header_length(server, conn);
                    if (needed == 0) return 0;
                }
            }
            if (r->header_fill < needed) return 0;
            if (!vrs__frame_begin(server, conn)) return 0;
        }
        {
            size_t take = r->payload_due < length ? (size_t)r->payload_due : length;
            vrs__frame_payload(server, conn, data, take);
            data += take;
            length -= take;
            if (r->payload_due == 0 && (conn->state == VRS__OPEN || conn->state == VRS__CLOSING))
                vrs__frame_end(server, conn);
        }
    }
    return length;
}

/* ---------------------------------------------------------------------------------------------
   The opening handshake
   ------------------------------------------------------------------------------------------- */

static void vrs__open_websocket(vrs_server *server, vrs__conn *conn, const vrs_request *request,
                                const char *subprotocol) {
    char response[256], accept[29];
    vrs_span key = vrs_request_header(request, "Sec-WebSocket-Key");
    int length;
    vrs__websocket_accept(key.ptr, key.length, accept);
    length = snprintf(response, sizeof response,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                      accept, subprotocol ? "Sec-WebSocket-Protocol: " : "",
                      subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "");
    if (length < 0 || (size_t)length >= sizeof response ||
        vrs__chain_blocks_needed(&conn->outbound, (size_t)length) > server->pool.free_count) {
        vrs__respond_error(server, conn, 503, NULL);
        return;
    }
    vrs__queue_bytes(server, conn, response, (size_t)length);
    VRS_MEMSET(&conn->reader, 0, sizeof conn->reader);
    conn->state = VRS__OPEN;
    conn->announced = 1;
    server->websocket_count++;
    conn->idle_deadline_ms = server->now_ms + server->desc.idle_timeout_ms;
    vrs__set_deadline(server, conn, vrs__open_deadline(server, conn));
    vrs__log(server, VRS_LOG_CONNECTION_OPENED, conn->remote_address);
    if (server->desc.on_open) server->desc.on_open(server, vrs__handle(server, conn), server->desc.user_data);
}

/* 1 when `path` is the Phoenix socket's WebSocket endpoint: socket_path + "/websocket". */
static int vrs__is_socket_path(const vrs_server *server, vrs_span path) {
    size_t base = strlen(server->desc.socket_path);
    return path.length == base + 10 && memcmp(path.ptr, server->desc.socket_path, base) == 0 &&
           memcmp(path.ptr + base, "/websocket", 10) == 0;
}

/* A whole request head: answers it, or opens the WebSocket. */
static void vrs__handle_request(vrs_server *server, vrs__conn *conn, vrs_request *request) {
    vrs__upgrade_check upgrade;
    VRS_MEMCPY(request->remote_address, conn->remote_address, sizeof request->remote_address);
    conn->head_request = (uint8_t)vrs_span_equals(request->method, "HEAD"); /* no body in any answer */
    if (request->minor_version >= 1 && !vrs__header_present(request, "Host")) {
        vrs__log(server, VRS_LOG_BAD_REQUEST, conn->remote_address);
        vrs__respond_error(server, conn, 400, NULL);
        return;
    }
    upgrade = vrs__check_upgrade(request);
    if (server->draining && (upgrade != VRS__NOT_AN_UPGRADE ||
                             (!server->desc.disable_phoenix && vrs__is_socket_path(server, request->path)))) {
        vrs__log(server, VRS_LOG_DRAINING_REFUSED, conn->remote_address);
        vrs__respond_error(server, conn, 503, "Retry-After: 0\r\n");
        return;
    }
    if (!server->desc.disable_phoenix && vrs__is_socket_path(server, request->path)) {
        vrs__phoenix_handshake(server, conn, request);
        return;
    }
    /* with the Phoenix socket on, other paths are plain HTTP unless the host takes WebSockets */
    if (upgrade == VRS__NOT_AN_UPGRADE || (!server->desc.disable_phoenix && !server->desc.on_message)) {
        if (server->desc.on_http)
            server->desc.on_http(server, vrs__handle(server, conn), request, server->desc.user_data);
        if (conn->state == VRS__READING_REQUEST) vrs__respond_error(server, conn, 404, NULL);
        return;
    }
    if (upgrade == VRS__UPGRADE_BAD) {
        vrs__log(server, VRS_LOG_BAD_UPGRADE, conn->remote_address);
        vrs__respond_error(server, conn, 400, NULL);
        return;
    }
    if (upgrade == VRS__UPGRADE_VERSION) {
        vrs__log(server, VRS_LOG_UNSUPPORTED_VERSION, conn->remote_address);
        vrs__respond_error(server, conn, 426, "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    {
        vrs_upgrade_answer answer;
        VRS_MEMSET(&answer, 0, sizeof answer);
        if (server->desc.on_upgrade)
            server->desc.on_upgrade(server, vrs__handle(server, conn), request, &answer, server->desc.user_data);
        /* a response the hook sent with vrs_http_respond refuses the upgrade too */
        if (answer.refuse_status || conn->state != VRS__READING_REQUEST) {
            vrs__log(server, VRS_LOG_UPGRADE_REFUSED, conn->remote_address);
            if (conn->state == VRS__READING_REQUEST) vrs__respond_error(server, conn, answer.refuse_status, NULL);
            return;
        }
        if (answer.subprotocol && !vrs_request_offers_subprotocol(request, answer.subprotocol)) {
            vrs__log(server, VRS_LOG_SUBPROTOCOL_NOT_OFFERED, answer.subprotocol);
            answer.subprotocol = NULL;
        }
        conn->user_data = answer.conn_user_data;
        vrs__open_websocket(server, conn, request, answer.subprotocol);
    }
}

/* Bytes of a request head. `data` lies in the read buffer; bytes after the head (a client
   that did not wait for our answer) go on to the frame reader. */
static void vrs__read_request(vrs_server *server, vrs__conn *conn, uint8_t *data, size_t length) {
    const char *head = (const char *)data;
    size_t total = length, head_length;
    vrs_request request;
    vrs__parse_status status;
    if (conn->inbound.length > 0) {
        if (!vrs__inbound_append(server, conn, data, length)) return;
        total = conn->inbound.length;
        vrs__chain_gather(&server->pool, &conn->inbound, server->assembly);
        head = (const char *)server->assembly;
    }
    head_length = vrs__http_head_length(head, total);
    if (head_length == 0 || head_length > (size_t)server->desc.max_request_size) {
        if (total > (size_t)server->desc.max_request_size) {
            vrs__log(server, VRS_LOG_REQUEST_TOO_LARGE, conn->remote_address);
            vrs__respond_error(server, conn, 431, NULL);
        } else if (conn->inbound.length == 0) {
            vrs__inbound_append(server, conn, data, length);
        }
        return;
    }
    status = vrs__http_parse(head, head_length, &request);
    if (status != VRS__PARSE_DONE) {
        int too_many = status == VRS__PARSE_TOO_MANY_HEADERS;
        vrs__log(server, too_many ? VRS_LOG_REQUEST_TOO_LARGE : VRS_LOG_BAD_REQUEST, conn->remote_address);
        vrs__respond_error(server, conn, too_many ? 431 : 400, NULL);
        return;
    }
    vrs__handle_request(server, conn, &request);
    if (total > head_length && conn->state == VRS__OPEN) {
        /* early frames: move them to the read buffer, which the reader may alter */
        size_t rest = total - head_length;
        memmove(server->read_buffer, head + head_length, rest);
        vrs__inbound_clear(server, conn);
        vrs__read_frames(server, conn, server->read_buffer, rest, 1);
        return;
    }
    vrs__inbound_clear(server, conn);
}

/* Parses what a connection held while it was paused, as if it had just been read; what a new
   pause leaves unparsed stays held, in the blocks it had. */
static void vrs__read_held(vrs_server *server, vrs__conn *conn) {
    size_t length = conn->held.length, rest;
    VRS_ASSERT(length <= VRS__READ_BUFFER_SIZE); /* the rest of one read at most */
    vrs__chain_gather(&server->pool, &conn->held, server->read_buffer);
    server->sender = conn;
    rest = vrs__read_frames(server, conn, server->read_buffer, length, 0);
    server->sender = NULL;
    server->pool.inbound_used -= vrs__chain_consume(&server->pool, &conn->held, length - rest);
}

/* Resumed connections parse what they held, in the end-of-step pass. */
static void vrs__read_resumed(vrs_server *server) {
    while (server->ready_head != VRS__NONE) {
        vrs__conn *conn = &server->conns[server->ready_head];
        server->ready_head = conn->next_ready;
        conn->ready = 0;
        if (!conn->paused && conn->held.length > 0) vrs__read_held(server, conn);
    }
}

static void vrs__read(vrs_server *server, vrs__conn *conn) {
    size_t capacity = VRS__READ_BUFFER_SIZE;
    ptrdiff_t got;
    int peek = 0;
    if (conn->held.length > 0) { /* what it held comes before anything newer */
        vrs__read_held(server, conn);
        if (conn->held.length > 0 || conn->dead) return;
    }
    if (conn->state == VRS__OPEN) {
        if (vrs__pool_tight(server)) {
            vrs__pause(server, conn, VRS__POOL_WAIT); /* its bytes wait in the kernel */
            return;
        }
        peek = vrs__should_peek(server);
    }
    if (conn->state == VRS__READING_REQUEST) {
        /* never more than one byte past the limit, so the head fits the assembly buffer */
        capacity = (size_t)server->desc.max_request_size + 1 - conn->inbound.length;
        if (capacity > VRS__READ_BUFFER_SIZE) capacity = VRS__READ_BUFFER_SIZE;
    }
    got = vrs__recv(conn->fd, server->read_buffer, capacity, peek ? MSG_PEEK : 0);
    if (got <= 0) {
        if (got < 0 && (vrs__last_io_error() == VRS__IO_RETRY || vrs__last_io_error() == VRS__IO_WOULD_BLOCK)) return;
        if (conn->state == VRS__OPEN || conn->state == VRS__CLOSING)
            vrs__log(server, VRS_LOG_CONNECTION_RESET, conn->remote_address);
        /* after our close frame, on_close reports the code we sent, as it does at the timeout */
        vrs__kill(server, conn, conn->state == VRS__CLOSING ? (int)conn->close_code : (int)VRS__CLOSE_ABNORMAL);
        return;
    }
    server->bytes_received += (uint64_t)got;
    server->sender = conn; /* what its messages queue for others may pause it */
    switch (conn->state) {
    case VRS__READING_REQUEST: vrs__read_request(server, conn, server->read_buffer, (size_t)got); break;
    case VRS__OPEN:
        conn->idle_deadline_ms = server->now_ms + server->desc.idle_timeout_ms;
        vrs__set_deadline(server, conn, vrs__open_deadline(server, conn));
        if (peek) { /* take from the kernel what was parsed; the rest stays there */
            size_t parsed = (size_t)got - vrs__read_frames(server, conn, server->read_buffer, (size_t)got, 0);
            server->bytes_received -= (uint64_t)got - parsed; /* counted when they are read again */
            if (parsed > 0 && !conn->dead && vrs__recv(conn->fd, server->read_buffer, parsed, 0) < 0)
                vrs__kill(server, conn, VRS__CLOSE_ABNORMAL);
        } else {
            vrs__read_frames(server, conn, server->read_buffer, (size_t)got, 1);
        }
        break;
    case VRS__CLOSING: vrs__read_frames(server, conn, server->read_buffer, (size_t)got, 1); break;
    default: break; /* draining: the bytes are not wanted */
    }
    server->sender = NULL;
}

/* ---------------------------------------------------------------------------------------------
   Accepting and releasing connections
   ------------------------------------------------------------------------------------------- */

static void vrs__format_address(const struct sockaddr_storage *address, char out[64]) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port;
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = VRS__CAST(const struct sockaddr_in *, (const void *)address);
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        port = ntohs(v4->sin_port);
        snprintf(out, 64, "%s:%d", host, port);
    } else if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = VRS__CAST(const struct sockaddr_in6 *, (const void *)address);
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        port = ntohs(v6->sin6_port);
        if (strncmp(host, "::ffff:", 7) == 0 && strchr(host + 7, '.'))
            snprintf(out, 64, "%s:%d", host + 7, port); /* IPv4 reaching a dual-stack socket */
        else
            snprintf(out, 64, "[%s]:%d", host, port);
    } else {
        snprintf(out, 64, "unknown");
    }
}

/* Takes a slot for an accepted socket (the caller checked that one is free). */
static vrs__conn *vrs__adopt(vrs_server *server, vrs__socket fd, const struct sockaddr_storage *address,
                             int rejection) {
    uint32_t slot = server->free_slots[--server->free_slot_count];
    vrs__conn *conn = &server->conns[slot];
    uint64_t generation = conn->generation;
    VRS_MEMSET(conn, 0, sizeof *conn);
    conn->generation = generation;
    conn->fd = fd;
    conn->state = VRS__READING_REQUEST;
    conn->is_rejection = (uint8_t)rejection;
    vrs__chain_init(&conn->inbound);
    vrs__chain_init(&conn->held);
    vrs__chain_init(&conn->outbound);
    conn->first_channel = VRS__NONE;
    conn->blocked_on = conn->first_waiter = VRS__NONE;
    conn->watching_read = 1;
    vrs__format_address(address, conn->remote_address);
    conn->active_position = server->active_count;
    server->active[server->active_count++] = slot;
    if (rejection) server->rejection_count++;
    else server->open_count++;
#ifdef VRS_USE_EPOLL
    {
        struct epoll_event event;
        VRS_MEMSET(&event, 0, sizeof event);
        event.events = EPOLLIN;
        event.data.u32 = slot;
        if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
            vrs__log(server, VRS_LOG_SYSTEM_ERROR, "epoll_ctl: cannot watch a new connection");
            vrs__kill(server, conn, VRS__CLOSE_ABNORMAL);
        }
    }
#endif
    return conn;
}

/* A client is accepted only when a slot can take it: a connection slot, or at capacity a slot
   that answers 503. Otherwise it waits in the listen backlog, for a slot to free. */
static int vrs__can_accept(const vrs_server *server) {
    /* free_slot_count is 0 only when retired slots (see VRS__GENERATION_LIMIT) took the last */
    return server->now_ms >= server->accept_paused_until_ms && server->free_slot_count > 0 &&
           (server->open_count < server->desc.max_connections || server->rejection_count < VRS_REJECT_SLOTS);
}

static void vrs__accept(vrs_server *server) {
    int accepted;
    for (accepted = 0; accepted < VRS__ACCEPT_BATCH && vrs__can_accept(server); accepted++) {
        struct sockaddr_storage address;
        socklen_t address_length = sizeof address;
        vrs__socket fd = accept(server->listen_fd, VRS__CAST(struct sockaddr *, (void *)&address), &address_length);
        int one = 1, rejection;
        vrs__conn *conn;
        if (fd == VRS__NO_SOCKET) {
            vrs__io_error error = vrs__last_io_error();
            char text[128];
            if (error == VRS__IO_RETRY || error == VRS__IO_ABORTED) continue;
            if (error == VRS__IO_EXHAUSTED) {
                /* the client waits in the backlog; polling the listener now would spin */
                vrs__log(server, VRS_LOG_DESCRIPTOR_LIMIT, vrs__last_error_text(text, sizeof text));
                server->accept_paused_until_ms = server->now_ms + 100;
            } else if (error != VRS__IO_WOULD_BLOCK) {
                vrs__log(server, VRS_LOG_ACCEPT_FAILED, vrs__last_error_text(text, sizeof text));
            }
            return;
        }
        vrs__socket_prepare(fd);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, VRS__CAST(const char *, (const void *)&one), sizeof one);
        server->connections_accepted++;
        rejection = server->open_count >= server->desc.max_connections;
        conn = vrs__adopt(server, fd, &address, rejection);
        if (rejection) {
            /* The answer goes at once; the request is read and discarded while the socket
               drains, so that closing never resets it. It lingers a short while only. */
            int linger = server->desc.close_timeout_ms < VRS__REFUSAL_LINGER_MS ? server->desc.close_timeout_ms
                                                                                 : VRS__REFUSAL_LINGER_MS;
            vrs__log(server, VRS_LOG_CONNECTIONS_FULL, conn->remote_address);
            vrs__respond_error(server, conn, 503, NULL);
            vrs__set_deadline(server, conn, server->now_ms + linger);
        } else {
            vrs__set_deadline(server, conn, server->now_ms + server->desc.handshake_timeout_ms);
        }
    }
}

static void vrs__release(vrs_server *server, vrs__conn *conn) {
    uint32_t slot = (uint32_t)(conn - server->conns);
    uint32_t last = server->active[--server->active_count];
    vrs__leave_flow(server, conn);
    vrs__socket_close(conn->fd);
    vrs__inbound_clear(server, conn);
    vrs__chain_clear(&server->pool, &conn->outbound);
    if (conn->announced) server->websocket_count--;
    if (conn->is_rejection) server->rejection_count--;
    else server->open_count--;
    server->active[conn->active_position] = last;
    server->conns[last].active_position = conn->active_position;
    conn->state = VRS__FREE;
    conn->fd = VRS__NO_SOCKET;
    if (vrs__next_generation(&conn->generation)) server->free_slots[server->free_slot_count++] = slot;
}

/* The end-of-step pass: owed on_close calls, then sockets released. A callback may end other
   connections, which join the list; it runs until the list is empty. */
static void vrs__attend(vrs_server *server) {
    while (server->attention_head != VRS__NONE || server->dirty_head != VRS__NONE ||
           server->ready_head != VRS__NONE) {
        vrs__flush_dirty(server);
        vrs__read_resumed(server);
        while (server->attention_head != VRS__NONE) {
            vrs__conn *conn = &server->conns[server->attention_head];
            server->attention_head = conn->next_attention;
            conn->attention = 0;
            /* a Phoenix socket that stopped being open leaves its rooms now, not when its
               close handshake ends, so that the others hear of it at once */
            if (conn->phoenix && conn->first_channel != VRS__NONE && (conn->state != VRS__OPEN || conn->dead))
                vrs__phoenix_socket_ended(server, conn);
            if (conn->close_owed) {
                conn->close_owed = 0;
                conn->announced = 0;
                server->websocket_count--;
                if (conn->close_code >= 1000 && conn->close_code < 1000 + VRS_STATS_CLOSE_CODES)
                    server->closes_by_code[conn->close_code - 1000]++;
                else
                    server->closes_other_code++;
                vrs__log(server, VRS_LOG_CONNECTION_CLOSED, conn->remote_address);
                if (server->desc.on_close)
                    server->desc.on_close(server, vrs__handle(server, conn), conn->close_code,
                                          server->desc.user_data);
                /* the handle is stale from here on, even while the socket drains */
                conn->handle_ended = 1;
            }
            if (conn->dead && conn->state != VRS__FREE) {
                conn->dead = 0;
                vrs__release(server, conn);
            }
        }
        vrs__pool_recovered(server); /* with the blocks of the connections released */
    }
}

/* A paused connection is not idle while bytes it sent wait for us to read them: the pause is
   ours, and the idle timeout counts from the client's last bytes. */
static int vrs__client_bytes_wait(const vrs__conn *conn) {
    uint8_t byte;
    return conn->paused && (conn->held.length > 0 || vrs__recv(conn->fd, &byte, 1, MSG_PEEK) > 0);
}

static void vrs__run_timers(vrs_server *server) {
    uint32_t i;
    if (server->now_ms < server->next_timer_ms) return;
    server->next_timer_ms = INT64_MAX;
    for (i = 0; i < server->active_count; i++) {
        vrs__conn *conn = &server->conns[server->active[i]];
        if (conn->dead) continue;
        if (conn->deadline_ms > server->now_ms) {
            if (conn->deadline_ms < server->next_timer_ms) server->next_timer_ms = conn->deadline_ms;
            continue;
        }
        switch (conn->state) {
        case VRS__READING_REQUEST:
            vrs__log(server, VRS_LOG_HANDSHAKE_TIMEOUT, conn->remote_address);
            vrs__respond_error(server, conn, 408, NULL);
            break;
        case VRS__OPEN:
            if (conn->outbound.length > 0 &&
                server->now_ms >= conn->progress_ms + server->desc.slow_consumer_timeout_ms) {
                vrs__close_slow_consumer(server, conn, VRS_LOG_SLOW_CONSUMER);
            } else if (server->now_ms >= conn->idle_deadline_ms && !vrs__client_bytes_wait(conn)) {
                vrs__log(server, VRS_LOG_IDLE_TIMEOUT, conn->remote_address);
                vrs__start_close(server, conn, VRS__CLOSE_GOING_AWAY, "idle timeout");
            } else {
                if (server->now_ms >= conn->idle_deadline_ms)
                    conn->idle_deadline_ms = server->now_ms + server->desc.idle_timeout_ms;
                vrs__set_deadline(server, conn, vrs__open_deadline(server, conn));
            }
            break;
        case VRS__CLOSING:
            vrs__log(server, VRS_LOG_CLOSE_TIMEOUT, conn->remote_address);
            vrs__kill(server, conn, conn->close_code);
            break;
        default:
            vrs__kill(server, conn, VRS__CLOSE_ABNORMAL);
            break;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
   Randomness and peer ids: UUID v4 from the operating system's random source
   ------------------------------------------------------------------------------------------- */

static int vrs__random_bytes(vrs_server *server, uint8_t *out, size_t length) {
    while (length > 0) {
        size_t take;
        if (server->random_fill == server->random_used) {
            ptrdiff_t got = vrs__random_read(server->random_fd, server->random_pool, sizeof server->random_pool);
            if (got <= 0) {
                vrs__log(server, VRS_LOG_SYSTEM_ERROR, "reading " VRS__RANDOM_SOURCE " failed");
                return 0;
            }
            server->random_fill = (size_t)got;
            server->random_used = 0;
        }
        take = server->random_fill - server->random_used;
        if (take > length) take = length;
        VRS_MEMCPY(out, server->random_pool + server->random_used, take);
        /* used bytes are wiped so that no later read of the pool repeats them */
        VRS_MEMSET(server->random_pool + server->random_used, 0, take);
        server->random_used += take;
        out += take;
        length -= take;
    }
    return 1;
}

static int vrs__make_peer_id(vrs_server *server, char out[37]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    int i, o = 0;
    if (!vrs__random_bytes(server, b, sizeof b)) return 0;
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return 1;
}

/* ---------------------------------------------------------------------------------------------
   Rooms and channels
   ------------------------------------------------------------------------------------------- */

#define VRS__REF_MAX 40          /* bytes of a join_ref kept as JSON text, quotes included */
#define VRS__INLINE_METADATA 96  /* metadata up to this size lives in the channel itself */

typedef struct vrs__channel {
    uint64_t generation;
    uint8_t in_use;
    uint8_t relay_joined;
    uint8_t join_ref_length;   /* the join's join_ref as JSON text: "null" when it had none */
    uint8_t push_ref_length;   /* what pushes and replies carry: join_ref, or the join's ref */
    uint16_t metadata_length;  /* relay metadata M as JSON text */
    uint32_t conn;             /* connection slot */
    uint32_t room;             /* room slot */
    uint32_t prev_in_room, next_in_room, next_in_conn;
    char join_ref[VRS__REF_MAX];
    char push_ref[VRS__REF_MAX];
    char peer_id[37];
    char metadata[VRS__INLINE_METADATA];
    vrs__chain metadata_overflow; /* M when longer than the inline room */
    void *user_data;
} vrs__channel;

typedef struct vrs__room {
    uint64_t generation;
    uint8_t in_use;
    uint8_t closing;           /* the host closes it: its channels are going */
    uint16_t id_length;
    uint32_t hash;
    uint32_t next_in_bucket;
    uint32_t first_peer, last_peer;
    int peer_count;
    void *user_data;
} vrs__room;

static uint32_t vrs__hash(const char *bytes, size_t length) {
    uint32_t h = 2166136261u; /* FNV-1a */
    size_t i;
    for (i = 0; i < length; i++) h = (h ^ (uint8_t)bytes[i]) * 16777619u;
    return h;
}

static char *vrs__room_id(vrs_server *server, uint32_t room) {
    return server->room_ids + (size_t)room * ((size_t)server->desc.max_room_id_size + 1);
}

static vrs__room *vrs__room_lookup(vrs_server *server, vrs_room handle) {
    uint32_t index = vrs__handle_slot(handle.id);
    vrs__room *room;
    if (!server || index == 0 || index > (uint32_t)server->desc.max_rooms) return NULL;
    room = &server->rooms[index - 1];
    return room->in_use && vrs__handle_is_current(handle.id, room->generation) ? room : NULL;
}

static vrs__channel *vrs__channel_lookup(vrs_server *server, vrs_peer handle) {
    uint32_t index = vrs__handle_slot(handle.id);
    vrs__channel *channel;
    if (!server || index == 0 || index > (uint32_t)server->desc.max_channels) return NULL;
    channel = &server->channels[index - 1];
    return channel->in_use && vrs__handle_is_current(handle.id, channel->generation) ? channel : NULL;
}

static vrs_room vrs__room_handle(vrs_server *server, uint32_t room) {
    vrs_room handle;
    handle.id = vrs__handle_id(server->rooms[room].generation, room);
    return handle;
}

static vrs_peer vrs__peer_handle(vrs_server *server, const vrs__channel *channel) {
    vrs_peer handle;
    handle.id = vrs__handle_id(channel->generation, (size_t)(channel - server->channels));
    return handle;
}

static uint32_t vrs__room_find(vrs_server *server, const char *id, size_t length) {
    uint32_t hash = vrs__hash(id, length);
    uint32_t room = server->room_buckets[hash & server->room_bucket_mask];
    while (room != VRS__NONE) {
        vrs__room *r = &server->rooms[room];
        if (r->hash == hash && r->id_length == length && memcmp(vrs__room_id(server, room), id, length) == 0)
            return room;
        room = r->next_in_bucket;
    }
    return VRS__NONE;
}

static uint32_t vrs__room_create(vrs_server *server, const char *id, size_t length) {
    uint32_t room, *bucket;
    vrs__room *r;
    if (server->free_room_count == 0) return VRS__NONE;
    room = server->free_rooms[--server->free_room_count];
    r = &server->rooms[room];
    r->in_use = 1;
    r->closing = 0;
    r->id_length = (uint16_t)length;
    r->hash = vrs__hash(id, length);
    r->first_peer = r->last_peer = VRS__NONE;
    r->peer_count = 0;
    r->user_data = NULL;
    VRS_MEMCPY(vrs__room_id(server, room), id, length);
    vrs__room_id(server, room)[length] = '\0';
    bucket = &server->room_buckets[r->hash & server->room_bucket_mask];
    r->next_in_bucket = *bucket;
    *bucket = room;
    server->room_count++;
    if (server->desc.room_logic.on_room_created)
        server->desc.room_logic.on_room_created(server, vrs__room_handle(server, room),
                                                server->desc.room_logic.user_data);
    return room;
}

static void vrs__room_destroy(vrs_server *server, uint32_t room) {
    vrs__room *r = &server->rooms[room];
    uint32_t *link = &server->room_buckets[r->hash & server->room_bucket_mask];
    if (server->desc.room_logic.on_room_destroyed)
        server->desc.room_logic.on_room_destroyed(server, vrs__room_handle(server, room),
                                                  server->desc.room_logic.user_data);
    while (*link != room) link = &server->rooms[*link].next_in_bucket;
    *link = r->next_in_bucket;
    r->in_use = 0;
    /* nothing cached for this room may reach the next room in its slot */
    if (server->topic_key == vrs__room_handle(server, room).id) server->topic_key = 0;
    if (vrs__next_generation(&r->generation)) server->free_rooms[server->free_room_count++] = room;
    server->room_count--;
}

static void vrs__room_unlink(vrs_server *server, vrs__channel *channel) {
    vrs__room *r = &server->rooms[channel->room];
    if (channel->prev_in_room != VRS__NONE) server->channels[channel->prev_in_room].next_in_room = channel->next_in_room;
    else r->first_peer = channel->next_in_room;
    if (channel->next_in_room != VRS__NONE) server->channels[channel->next_in_room].prev_in_room = channel->prev_in_room;
    else r->last_peer = channel->prev_in_room;
    channel->prev_in_room = channel->next_in_room = VRS__NONE;
}

static void vrs__room_append(vrs_server *server, vrs__channel *channel) {
    vrs__room *r = &server->rooms[channel->room];
    uint32_t index = (uint32_t)(channel - server->channels);
    channel->prev_in_room = r->last_peer;
    channel->next_in_room = VRS__NONE;
    if (r->last_peer != VRS__NONE) server->channels[r->last_peer].next_in_room = index;
    else r->first_peer = index;
    r->last_peer = index;
}

static void vrs__metadata_clear(vrs_server *server, vrs__channel *channel) {
    vrs__chain_clear(&server->pool, &channel->metadata_overflow);
    channel->metadata_length = 0;
}

/* Stores M (JSON text). Returns 0 when the pool cannot hold it. */
static int vrs__metadata_store(vrs_server *server, vrs__channel *channel, const char *m, size_t length) {
    size_t held = (channel->metadata_overflow.length + VRS_BLOCK_SIZE - 1) / VRS_BLOCK_SIZE;
    size_t needed = length <= VRS__INLINE_METADATA ? 0 : (length + VRS_BLOCK_SIZE - 1) / VRS_BLOCK_SIZE;
    if (needed > server->pool.free_count + held) return 0; /* the old M stays */
    vrs__metadata_clear(server, channel);
    if (length <= VRS__INLINE_METADATA) VRS_MEMCPY(channel->metadata, m, length);
    else vrs__chain_append(&server->pool, &channel->metadata_overflow, m, length);
    channel->metadata_length = (uint16_t)length;
    return 1;
}

static void vrs__jw_metadata(vrs_server *server, vrs__json_writer *w, const vrs__channel *channel) {
    if (channel->metadata_length == 0) {
        vrs__jw_null(w);
    } else if (channel->metadata_length <= VRS__INLINE_METADATA) {
        vrs__jw_raw(w, channel->metadata, channel->metadata_length);
    } else if (w->length + channel->metadata_length <= w->capacity) {
        vrs__chain_gather(&server->pool, &channel->metadata_overflow, VRS__CAST(uint8_t *, (void *)(w->buffer + w->length)));
        w->length += channel->metadata_length;
    } else {
        w->overflowed = 1;
    }
}

/* ---------------------------------------------------------------------------------------------
   The Phoenix wire format (docs/PROTOCOL.md): V1 objects, V2 arrays, V2 binary
   ------------------------------------------------------------------------------------------- */

#define VRS__MAX_JSON_DEPTH 64
#define VRS__PAYLOAD_MEMBERS 4

/* One decoded client message. join_ref, ref and topic are kept as JSON text (from a binary
   frame they are encoded here), so that replies can echo them exactly. */
typedef struct vrs__message {
    vrs__json_slice join_ref, ref, topic_json;
    char topic[256];
    long topic_length;         /* -1: longer than the buffer */
    char event[64];
    long event_length;         /* -1: longer than the buffer (so no event we handle) */
    vrs__json_slice payload;   /* JSON text; for a binary frame, the raw bytes */
    int payload_is_binary;
    char encoded[3][1536];     /* JSON text of a binary frame's join_ref, ref and topic */
    /* The payload's members as validation found them (V2 text), so that no second walk over
       the payload is needed to find them; count -1: not recorded, walk the payload. */
    vrs__json_member payload_members[VRS__PAYLOAD_MEMBERS];
    int payload_member_count;
} vrs__message;

static vrs__json_slice vrs__slice(const char *text, size_t length) {
    vrs__json_slice s;
    s.start = text;
    s.length = length;
    return s;
}

static int vrs__json_is_null(vrs__json_slice value) {
    return value.length == 4 && memcmp(value.start, "null", 4) == 0;
}

static int vrs__is_scalar_ref(vrs__json_slice value) {
    vrs__json_kind kind = vrs__json_kind_of(value);
    return kind == VRS__JSON_STRING || kind == VRS__JSON_NULL || kind == VRS__JSON_NUMBER;
}

static int vrs__decode_names(vrs__message *m, vrs__json_slice topic, vrs__json_slice event) {
    if (vrs__json_kind_of(topic) != VRS__JSON_STRING || vrs__json_kind_of(event) != VRS__JSON_STRING) return 0;
    m->topic_json = topic;
    m->topic_length = vrs__json_string_decode(topic, m->topic, sizeof m->topic);
    m->event_length = vrs__json_string_decode(event, m->event, sizeof m->event);
    return 1;
}

/* V2 text: [join_ref, ref, topic, event, payload, ...ignored] */
static int vrs__decode_v2(const char *text, size_t length, vrs__message *m) {
    vrs__json_member items[5];
    vrs__json_record record = vrs__json_record_of(items, 5);
    record.nested_parent = 4;
    record.nested = m->payload_members;
    record.nested_capacity = VRS__PAYLOAD_MEMBERS;
    if (!vrs__json_validate_recording(text, length, VRS__MAX_JSON_DEPTH, 0, &record) ||
        vrs__json_kind_of(vrs__slice(text, length)) != VRS__JSON_ARRAY)
        return 0;
    if (record.count < 5 || !vrs__is_scalar_ref(items[0].value) || !vrs__is_scalar_ref(items[1].value)) return 0;
    m->join_ref = items[0].value;
    m->ref = items[1].value;
    m->payload = items[4].value;
    m->payload_member_count = record.nested_count <= VRS__PAYLOAD_MEMBERS ? record.nested_count : -1;
    return vrs__decode_names(m, items[2].value, items[3].value);
}

/* The payload member named `key` (decoded; the last one when it repeats), as vrs__json_object_get
   finds it. */
static int vrs__payload_get(const vrs__message *m, const char *key, vrs__json_slice *value) {
    int i, found = 0;
    if (vrs__json_kind_of(m->payload) != VRS__JSON_OBJECT) return 0;
    if (m->payload_member_count < 0) return vrs__json_object_get(m->payload, key, value);
    for (i = 0; i < m->payload_member_count; i++) {
        if (vrs__json_string_equals(m->payload_members[i].key, key)) {
            *value = m->payload_members[i].value;
            found = 1;
        }
    }
    return found;
}

/* V1 text: {"topic":..,"event":..,"payload":..,"ref":..,"join_ref":.. (optional)} */
static int vrs__decode_v1(const char *text, size_t length, vrs__message *m) {
    vrs__json_slice whole, topic, event;
    m->payload_member_count = -1;
    whole.start = text;
    whole.length = length;
    if (!vrs__json_validate(text, length, VRS__MAX_JSON_DEPTH) || vrs__json_kind_of(whole) != VRS__JSON_OBJECT)
        return 0;
    if (!vrs__json_object_get(whole, "topic", &topic) || !vrs__json_object_get(whole, "event", &event) ||
        !vrs__json_object_get(whole, "payload", &m->payload) || !vrs__json_object_get(whole, "ref", &m->ref))
        return 0;
    if (!vrs__json_object_get(whole, "join_ref", &m->join_ref)) {
        m->join_ref.start = "null";
        m->join_ref.length = 4;
    }
    if (!vrs__is_scalar_ref(m->join_ref) || !vrs__is_scalar_ref(m->ref)) return 0;
    return vrs__decode_names(m, topic, event);
}

/* V2 binary push, kind 0: 0, jr_len, ref_len, topic_len, event_len, join_ref, ref, topic, event,
   payload. The names become JSON strings (they must be UTF-8). */
static int vrs__decode_v2_binary(const uint8_t *data, size_t length, vrs__message *m) {
    size_t sizes[4], at = 5, i, total = 5;
    vrs__json_slice names[4];
    m->payload_member_count = -1;
    if (length < 5 || data[0] != 0) return 0;
    for (i = 0; i < 4; i++) total += sizes[i] = data[1 + i];
    if (length < total) return 0;
    for (i = 0; i < 4; i++) {
        vrs__json_writer w;
        const char *field = (const char *)data + at;
        if (!vrs__utf8_is_valid(data + at, sizes[i])) return 0;
        if (i == 3) { /* the event is not echoed: decode it straight */
            VRS_MEMCPY(m->event, field, sizes[i] < sizeof m->event ? sizes[i] : 0);
            m->event_length = sizes[i] < sizeof m->event ? (long)sizes[i] : -1;
            if (m->event_length >= 0) m->event[m->event_length] = '\0';
        } else {
            vrs__jw_init(&w, m->encoded[i], sizeof m->encoded[i]);
            vrs__jw_string(&w, field, sizes[i]);
            names[i].start = m->encoded[i];
            names[i].length = w.length;
        }
        at += sizes[i];
    }
    m->join_ref = names[0];
    m->ref = names[1];
    m->topic_json = names[2];
    m->topic_length = (long)sizes[2] < (long)sizeof m->topic ? (long)sizes[2] : -1;
    if (m->topic_length >= 0) {
        VRS_MEMCPY(m->topic, data + 5 + sizes[0] + sizes[1], sizes[2]);
        m->topic[sizes[2]] = '\0';
    }
    m->payload.start = (const char *)data + total;
    m->payload.length = length - total;
    m->payload_is_binary = 1;
    return 1;
}

static vrs__piece vrs__text_piece(const char *bytes, size_t length) {
    vrs__piece piece;
    piece.bytes = bytes;
    piece.length = length;
    return piece;
}

#define VRS__LITERAL_PIECE(literal) vrs__text_piece((literal), sizeof(literal) - 1)
#define VRS__ENVELOPE_PIECES 16

/* The pieces of one text message in the socket's serializer: V2 [join_ref, ref, topic, event,
   payload], V1 {"topic","event","payload","ref"}. All are JSON text; the payload comes in up to
   three pieces. Returns how many pieces. */
static int vrs__envelope_pieces(vrs__piece *out, int vsn, vrs__piece join_ref, vrs__piece ref, vrs__piece topic,
                                vrs__piece event, const vrs__piece *payload, int payload_count) {
    int n = 0, i;
    if (vsn == 2) {
        out[n++] = VRS__LITERAL_PIECE("[");
        out[n++] = join_ref;
        out[n++] = VRS__LITERAL_PIECE(",");
        out[n++] = ref;
        out[n++] = VRS__LITERAL_PIECE(",");
        out[n++] = topic;
        out[n++] = VRS__LITERAL_PIECE(",");
        out[n++] = event;
        out[n++] = VRS__LITERAL_PIECE(",");
        for (i = 0; i < payload_count; i++) out[n++] = payload[i];
        out[n++] = VRS__LITERAL_PIECE("]");
    } else {
        out[n++] = VRS__LITERAL_PIECE("{\"topic\":");
        out[n++] = topic;
        out[n++] = VRS__LITERAL_PIECE(",\"event\":");
        out[n++] = event;
        out[n++] = VRS__LITERAL_PIECE(",\"payload\":");
        for (i = 0; i < payload_count; i++) out[n++] = payload[i];
        out[n++] = VRS__LITERAL_PIECE(",\"ref\":");
        out[n++] = ref;
        out[n++] = VRS__LITERAL_PIECE("}");
    }
    return n;
}

/* Queues one text message, its payload in pieces; `event` is the event name as JSON text. */
static vrs_result vrs__send_envelope(vrs_server *server, vrs__conn *conn, vrs__piece join_ref, vrs__piece ref,
                                     vrs__piece topic, vrs__piece event, const vrs__piece *payload,
                                     int payload_count) {
    vrs__piece pieces[VRS__ENVELOPE_PIECES];
    int count = vrs__envelope_pieces(pieces, conn->vsn, join_ref, ref, topic, event, payload, payload_count);
    return vrs__queue_pieces(server, conn, VRS__OP_TEXT, pieces, count);
}

/* phx_reply with {"status":..,"response":..}; `response` is JSON text. */
static void vrs__reply(vrs_server *server, vrs__conn *conn, vrs__json_slice join_ref, const vrs__message *m,
                       int ok, const char *response, size_t response_length) {
    char payload[512];
    vrs__json_writer w;
    vrs__jw_init(&w, payload, sizeof payload);
    if (ok) VRS__JW_LITERAL(&w, "{\"status\":\"ok\",\"response\":");
    else VRS__JW_LITERAL(&w, "{\"status\":\"error\",\"response\":");
    vrs__jw_raw(&w, response, response_length);
    VRS__JW_LITERAL(&w, "}");
    if (w.overflowed) return;
    {
        vrs__piece body = vrs__text_piece(w.buffer, w.length);
        vrs__send_envelope(server, conn, vrs__text_piece(join_ref.start, join_ref.length),
                           vrs__text_piece(m->ref.start, m->ref.length),
                           vrs__text_piece(m->topic_json.start, m->topic_json.length),
                           VRS__LITERAL_PIECE("\"phx_reply\""), &body, 1);
    }
}

static void vrs__reply_error(vrs_server *server, vrs__conn *conn, vrs__json_slice join_ref,
                             const vrs__message *m, const char *reason) {
    char response[256];
    vrs__json_writer w;
    vrs__jw_init(&w, response, sizeof response);
    VRS__JW_LITERAL(&w, "{\"reason\":");
    vrs__jw_cstring(&w, reason);
    VRS__JW_LITERAL(&w, "}");
    vrs__reply(server, conn, join_ref, m, 0, w.buffer, w.length);
}

/* The channel's topic as JSON text, "room:<id>". The last room's is kept: a fan-out pushes
   to every peer of one room in a row. */
static vrs__piece vrs__channel_topic(vrs_server *server, const vrs__channel *channel) {
    vrs__room *room = &server->rooms[channel->room];
    uint64_t key = vrs__room_handle(server, channel->room).id;
    if (server->topic_key != key) {
        char topic[5 + 256];
        vrs__json_writer w;
        VRS_MEMCPY(topic, "room:", 5);
        VRS_MEMCPY(topic + 5, vrs__room_id(server, channel->room), room->id_length);
        vrs__jw_init(&w, server->topic_json, sizeof server->topic_json);
        vrs__jw_string(&w, topic, 5 + (size_t)room->id_length);
        server->topic_json_length = w.overflowed ? 0 : w.length;
        server->topic_key = key;
    }
    return vrs__text_piece(server->topic_json, server->topic_json_length);
}

/* A push from the channel: [push_ref, null, topic, event, payload]; `event` is JSON text. */
static vrs_result vrs__channel_push(vrs_server *server, vrs__channel *channel, vrs__piece event,
                                    const vrs__piece *payload, int payload_count) {
    return vrs__send_envelope(server, &server->conns[channel->conn],
                              vrs__text_piece(channel->push_ref, channel->push_ref_length),
                              VRS__LITERAL_PIECE("null"), vrs__channel_topic(server, channel), event, payload,
                              payload_count);
}

/* phx_close or phx_error: [join_ref, join_ref, topic, event, payload], with the join's own
   join_ref (null when it had none). */
static void vrs__channel_end_message(vrs_server *server, vrs__conn *conn, const char *join_ref,
                                     size_t join_ref_length, vrs__piece topic, vrs__piece event,
                                     const char *payload) {
    vrs__piece body = vrs__text_piece(payload, strlen(payload));
    vrs__send_envelope(server, conn, vrs__text_piece(join_ref, join_ref_length),
                       vrs__text_piece(join_ref, join_ref_length), topic, event, &body, 1);
}

/* mediaEvent {"data": D}, D being JSON text. */
static vrs_result vrs__push_media_event(vrs_server *server, vrs__channel *channel, const char *data,
                                        size_t length) {
    vrs__piece payload[3];
    payload[0] = VRS__LITERAL_PIECE("{\"data\":");
    payload[1] = vrs__text_piece(data, length);
    payload[2] = VRS__LITERAL_PIECE("}");
    return vrs__channel_push(server, channel, VRS__LITERAL_PIECE("\"mediaEvent\""), payload, 3);
}

static void vrs__log_peer(vrs_server *server, vrs_log_item item, const vrs__channel *channel) {
    char detail[200];
    snprintf(detail, sizeof detail, "peer %s, room:%.64s, %s", channel->peer_id,
             vrs__room_id(server, channel->room), server->conns[channel->conn].remote_address);
    vrs__log(server, item, detail);
}

/* Ends a channel: the room logic hears that the peer left, the channel leaves its room and its
   socket, and a room left empty is destroyed. Nothing is sent to the channel's client. */
static void vrs__channel_remove(vrs_server *server, vrs__channel *channel) {
    uint32_t room = channel->room, index = (uint32_t)(channel - server->channels);
    vrs__conn *conn = &server->conns[channel->conn];
    uint32_t *link = &conn->first_channel;
    vrs__room_unlink(server, channel);
    server->rooms[room].peer_count--;
    while (*link != index) link = &server->channels[*link].next_in_conn;
    *link = channel->next_in_conn;
    conn->channel_count--;
    /* out of its room and socket first: the callback may close the room (vrs_room_close),
       which must not find this channel again; its handle stays valid during the call */
    if (server->desc.room_logic.on_peer_left)
        server->desc.room_logic.on_peer_left(server, vrs__room_handle(server, room),
                                             vrs__peer_handle(server, channel),
                                             server->desc.room_logic.user_data);
    vrs__metadata_clear(server, channel);
    channel->in_use = 0;
    channel->relay_joined = 0;
    if (vrs__next_generation(&channel->generation)) server->free_channels[server->free_channel_count++] = index;
    server->channel_count--;
    vrs__log_peer(server, VRS_LOG_PEER_LEFT, channel);
    if (server->rooms[room].in_use && server->rooms[room].peer_count == 0) vrs__room_destroy(server, room);
}

static vrs__channel *vrs__channel_for_topic(vrs_server *server, vrs__conn *conn, const vrs__message *m) {
    uint32_t index;
    if (m->topic_length < 5 || memcmp(m->topic, "room:", 5) != 0) return NULL;
    for (index = conn->first_channel; index != VRS__NONE; index = server->channels[index].next_in_conn) {
        vrs__channel *channel = &server->channels[index];
        vrs__room *room = &server->rooms[channel->room];
        if ((long)room->id_length == m->topic_length - 5 &&
            memcmp(vrs__room_id(server, channel->room), m->topic + 5, room->id_length) == 0)
            return channel;
    }
    return NULL;
}

/* A room id is 1 to max_room_id_size bytes with no control character: "admins\u0000x" must
   not pass for "admins" in vrs_room_name, log lines or the host's C strings. */
static int vrs__room_id_is_valid(const vrs_server *server, const char *id, size_t length) {
    size_t i;
    if (length == 0 || length > (size_t)server->desc.max_room_id_size) return 0;
    for (i = 0; i < length; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7F) return 0;
    return 1;
}

static int vrs__copy_ref(char *out, uint8_t *out_length, vrs__json_slice ref) {
    if (ref.length > VRS__REF_MAX) return 0;
    VRS_MEMCPY(out, ref.start, ref.length);
    *out_length = (uint8_t)ref.length;
    return 1;
}

static void vrs__refuse_join(vrs_server *server, vrs__conn *conn, vrs__json_slice join_ref, const vrs__message *m,
                             vrs_join_failure failure) {
    server->join_failures[failure]++;
    vrs__reply_error(server, conn, join_ref, m, vrs_join_failure_reason(failure));
}

/* A socket whose URL named a room joins that room alone, so that a balancer hashing the URL's
   room keeps every peer of a room on one server. */
static int vrs__room_allowed(const vrs__conn *conn, const char *room_id, size_t length) {
    return conn->url_room_length == 0 ||
           (conn->url_room_length == length && conn->url_room_hash == vrs__hash(room_id, length));
}

static void vrs__join(vrs_server *server, vrs__conn *conn, const vrs__message *m) {
    vrs__channel *old = vrs__channel_for_topic(server, conn, m), *channel;
    char old_join_ref[VRS__REF_MAX];
    uint8_t old_join_ref_length = 0;
    const char *room_id = m->topic + 5;
    size_t room_id_length = m->topic_length >= 5 ? (size_t)m->topic_length - 5 : 0;
    uint32_t room, index;
    int displaced = old != NULL;
    if (m->topic_length < 0 ? (m->topic_json.length < 7 || memcmp(m->topic_json.start, "\"room:", 6) != 0)
                            : (m->topic_length < 5 || memcmp(m->topic, "room:", 5) != 0)) {
        vrs__refuse_join(server, conn, vrs__slice("null", 4), m, VRS_JOIN_FAILURE_UNMATCHED_TOPIC);
        return;
    }
    if (m->topic_length >= 0 && !vrs__room_allowed(conn, room_id, room_id_length)) {
        vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_OTHER_ROOM);
        return;
    }
    if (displaced) {
        /* a duplicate join: the old channel ends; its phx_close follows the new join's reply */
        VRS_MEMCPY(old_join_ref, old->join_ref, old->join_ref_length);
        old_join_ref_length = old->join_ref_length;
        vrs__channel_remove(server, old);
    }
    if (m->join_ref.length > VRS__REF_MAX || (vrs__json_is_null(m->join_ref) && m->ref.length > VRS__REF_MAX)) {
        vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_REF_TOO_LONG);
    } else if (m->topic_length < 0 || !vrs__room_id_is_valid(server, room_id, room_id_length)) {
        vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_INVALID_ROOM_ID);
    } else if (conn->channel_count >= (uint32_t)server->desc.max_channels_per_socket) {
        vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_TOO_MANY_CHANNELS);
    } else if (server->free_channel_count == 0) {
        vrs__log(server, VRS_LOG_CHANNEL_TABLE_FULL, conn->remote_address);
        vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_SERVER_FULL);
    } else {
        room = vrs__room_find(server, room_id, room_id_length);
        if (room == VRS__NONE) room = vrs__room_create(server, room_id, room_id_length);
        if (room == VRS__NONE) {
            vrs__log(server, VRS_LOG_ROOM_TABLE_FULL, conn->remote_address);
            vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_START_FAILED);
        } else if (server->rooms[room].peer_count >= server->desc.max_peers_per_room) {
            vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_ROOM_FULL);
        } else {
            char peer_id[37];
            if (!vrs__make_peer_id(server, peer_id)) {
                if (server->rooms[room].peer_count == 0) vrs__room_destroy(server, room);
                vrs__refuse_join(server, conn, m->join_ref, m, VRS_JOIN_FAILURE_START_FAILED);
            } else {
                index = server->free_channels[--server->free_channel_count];
                channel = &server->channels[index];
                channel->in_use = 1;
                channel->relay_joined = 0;
                channel->conn = (uint32_t)(conn - server->conns);
                channel->room = room;
                channel->user_data = NULL;
                channel->metadata_length = 0;
                vrs__chain_init(&channel->metadata_overflow);
                VRS_MEMCPY(channel->peer_id, peer_id, sizeof peer_id);
                vrs__copy_ref(channel->join_ref, &channel->join_ref_length, m->join_ref);
                vrs__copy_ref(channel->push_ref, &channel->push_ref_length,
                              vrs__json_is_null(m->join_ref) ? m->ref : m->join_ref);
                vrs__room_append(server, channel);
                server->rooms[room].peer_count++;
                channel->next_in_conn = conn->first_channel;
                conn->first_channel = index;
                conn->channel_count++;
                server->channel_count++;
                vrs__reply(server, conn, m->join_ref, m, 1, "{}", 2);
                vrs__log_peer(server, VRS_LOG_PEER_JOINED, channel);
                if (server->desc.room_logic.on_peer_joined)
                    server->desc.room_logic.on_peer_joined(server, vrs__room_handle(server, room),
                                                           vrs__peer_handle(server, channel),
                                                           server->desc.room_logic.user_data);
            }
        }
    }
    if (displaced)
        vrs__channel_end_message(server, conn, old_join_ref, old_join_ref_length,
                                 vrs__text_piece(m->topic_json.start, m->topic_json.length),
                                 VRS__LITERAL_PIECE("\"phx_close\""), "{}");
}

/* A whole client message on a Phoenix socket. */
static void vrs__phoenix_message(vrs_server *server, vrs__conn *conn, int opcode, const uint8_t *data,
                                 size_t length) {
    vrs__message m;
    vrs__channel *channel;
    int decoded;
    VRS_MEMSET(&m, 0, offsetof(vrs__message, encoded)); /* the encoded names need no clearing */
    if (opcode == VRS__OP_BINARY)
        decoded = conn->vsn == 2 && vrs__decode_v2_binary(data, length, &m);
    else if (conn->vsn == 2)
        decoded = vrs__decode_v2((const char *)data, length, &m);
    else
        decoded = vrs__decode_v1((const char *)data, length, &m);
    if (!decoded) {
        vrs__fail(server, conn, VRS__CLOSE_INVALID_DATA, VRS_LOG_BAD_MESSAGE);
        return;
    }
    if (m.event_length < 0) m.event[0] = '\0';
    if (m.topic_length == 7 && memcmp(m.topic, "phoenix", 7) == 0 && strcmp(m.event, "heartbeat") == 0) {
        vrs__reply(server, conn, vrs__slice("null", 4), &m, 1, "{}", 2);
        return;
    }
    if (strcmp(m.event, "phx_join") == 0) {
        vrs__join(server, conn, &m);
        return;
    }
    channel = vrs__channel_for_topic(server, conn, &m);
    if (!channel) {
        if (strcmp(m.event, "phx_leave") == 0)
            vrs__reply(server, conn, m.join_ref, &m, 1, "{}", 2);
        else
            vrs__reply_error(server, conn, vrs__slice("null", 4), &m, "unmatched topic");
        return;
    }
    if (!vrs__json_is_null(m.join_ref) &&
        (m.join_ref.length != channel->join_ref_length ||
         memcmp(m.join_ref.start, channel->join_ref, m.join_ref.length) != 0))
        return; /* stale: from a join this channel no longer is */
    if (strcmp(m.event, "phx_leave") == 0) {
        char join_ref[VRS__REF_MAX];
        size_t join_ref_length = channel->join_ref_length;
        VRS_MEMCPY(join_ref, channel->join_ref, join_ref_length);
        vrs__reply(server, conn, vrs__slice(channel->push_ref, channel->push_ref_length), &m, 1, "{}", 2);
        vrs__channel_remove(server, channel);
        vrs__channel_end_message(server, conn, join_ref, join_ref_length,
                                 vrs__text_piece(m.topic_json.start, m.topic_json.length),
                                 VRS__LITERAL_PIECE("\"phx_close\""), "{}");
        return;
    }
    if (strcmp(m.event, "mediaEvent") == 0) {
        vrs__json_slice data_value;
        if (m.payload_is_binary || !vrs__payload_get(&m, "data", &data_value)) {
            vrs__reply_error(server, conn, vrs__slice(channel->push_ref, channel->push_ref_length), &m,
                             "mediaEvent needs a JSON payload {\"data\": ...}");
            return;
        }
        if (server->desc.room_logic.on_media_event)
            server->desc.room_logic.on_media_event(server, vrs__room_handle(server, channel->room),
                                                   vrs__peer_handle(server, channel), data_value.start,
                                                   data_value.length, server->desc.room_logic.user_data);
        return;
    }
    vrs__reply_error(server, conn, vrs__slice(channel->push_ref, channel->push_ref_length), &m,
                     "unhandled event");
}

/* The socket is gone: each of its channels leaves its room; nothing is sent. */
static void vrs__phoenix_socket_ended(vrs_server *server, vrs__conn *conn) {
    while (conn->first_channel != VRS__NONE) vrs__channel_remove(server, &server->channels[conn->first_channel]);
}

/* "1.0.0" style versions: major.0.patch with a numeric patch. */
static int vrs__vsn_major(const char *vsn) {
    const char *p = vsn + 4;
    if ((vsn[0] != '1' && vsn[0] != '2') || vsn[1] != '.' || vsn[2] != '0' || vsn[3] != '.' || !*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return vsn[0] - '0';
}

static int vrs__origin_allowed(const vrs_server *server, vrs_span origin) {
    int i;
    if (!server->desc.allowed_origins || origin.length == 0) return 1;
    for (i = 0; i < server->desc.allowed_origin_count; i++)
        if (vrs__span_equals_nocase(origin, server->desc.allowed_origins[i])) return 1;
    return 0;
}

/* The Phoenix 1.8 auth token: "base64url.bearer.phx.<base64url, no padding>" among the
   offered subprotocols. Returns the decoded length, or -1 when none is offered or valid. */
static long vrs__auth_token(const vrs_request *request, char *out, size_t capacity) {
    static const char prefix[] = "base64url.bearer.phx.";
    int i;
    for (i = 0; i < request->header_count; i++) {
        vrs_span item;
        size_t at = 0;
        if (!vrs__span_equals_nocase(request->headers[i].name, "Sec-WebSocket-Protocol")) continue;
        while (vrs__next_list_item(request->headers[i].value, &at, &item)) {
            if (item.length > sizeof prefix - 1 && memcmp(item.ptr, prefix, sizeof prefix - 1) == 0) {
                char padded[1400];
                size_t n = 0, k;
                const char *token = item.ptr + sizeof prefix - 1;
                size_t token_length = item.length - (sizeof prefix - 1);
                if (token_length + 4 > sizeof padded) return -1;
                for (k = 0; k < token_length; k++) /* base64url to base64 */
                    padded[n++] = token[k] == '-' ? '+' : token[k] == '_' ? '/' : token[k];
                while (n % 4) padded[n++] = '=';
                return vrs__base64_decode(padded, n, VRS__CAST(uint8_t *, (void *)out), capacity);
            }
        }
    }
    return -1;
}

/* The socket's upgrade request, checked in Phoenix's order: method, origin, vsn, the host's
   connect hook, then the RFC 6455 checks. */
static void vrs__phoenix_handshake(vrs_server *server, vrs__conn *conn, const vrs_request *request) {
    char vsn[16], token[1024], room[1024];
    long token_length;
    int major = 1, vsn_length, room_length;
    vrs__upgrade_check upgrade;
    if (!vrs_span_equals(request->method, "GET")) {
        vrs__log(server, VRS_LOG_BAD_UPGRADE, conn->remote_address);
        vrs__respond_error(server, conn, 400, NULL);
        return;
    }
    if (!vrs__origin_allowed(server, vrs_request_header(request, "Origin"))) {
        vrs__log(server, VRS_LOG_ORIGIN_REFUSED, conn->remote_address);
        vrs__respond_error(server, conn, 403, NULL);
        return;
    }
    vsn_length = vrs_request_query(request, "vsn", vsn, sizeof vsn);
    if (vsn_length != -1) major = vsn_length > 0 ? vrs__vsn_major(vsn) : 0; /* absent: V1 */
    if (major == 0) {
        vrs__log(server, VRS_LOG_VSN_REFUSED, conn->remote_address);
        vrs__respond_error(server, conn, 403, NULL);
        return;
    }
    room_length = vrs_request_query(request, "room", room, sizeof room);
    if (room_length == 0 || room_length < -1 || room_length > server->desc.max_room_id_size) {
        vrs__log(server, VRS_LOG_ROOM_PARAM_REFUSED, conn->remote_address);
        vrs__respond_error(server, conn, 403, NULL);
        return;
    }
    token_length = vrs__auth_token(request, token, sizeof token);
    if (server->desc.on_connect) {
        vrs_connect_info info;
        int refused;
        info.request = request;
        info.origin = vrs_request_header(request, "Origin");
        info.remote_address = conn->remote_address;
        info.auth_token = token_length >= 0 ? token : NULL;
        info.auth_token_length = token_length >= 0 ? (size_t)token_length : 0;
        refused = server->desc.on_connect(server, vrs__handle(server, conn), &info, server->desc.user_data);
        /* a response the hook sent with vrs_http_respond refuses the socket too */
        if (refused != 0 || conn->state != VRS__READING_REQUEST) {
            vrs__log(server, VRS_LOG_CONNECT_REFUSED, conn->remote_address);
            if (conn->state == VRS__READING_REQUEST) vrs__respond_error(server, conn, 403, NULL);
            return;
        }
    }
    upgrade = vrs__check_upgrade(request);
    if (upgrade != VRS__UPGRADE_VALID) {
        int version = upgrade == VRS__UPGRADE_VERSION;
        vrs__log(server, version ? VRS_LOG_UNSUPPORTED_VERSION : VRS_LOG_BAD_UPGRADE, conn->remote_address);
        vrs__respond_error(server, conn, version ? 426 : 400, version ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return;
    }
    conn->phoenix = 1;
    conn->vsn = (uint8_t)major;
    if (room_length > 0) {
        conn->url_room_length = (uint16_t)room_length;
        conn->url_room_hash = vrs__hash(room, (size_t)room_length);
    }
    conn->first_channel = VRS__NONE;
    vrs__open_websocket(server, conn, request,
                        vrs_request_offers_subprotocol(request, "phoenix") ? "phoenix" : NULL);
}

/* ---------------------------------------------------------------------------------------------
   The relay room logic (docs/RELAY.md)
   ------------------------------------------------------------------------------------------- */

/* The relay writes each event's D (a JSON string holding E) once, into relay_outer after room
   for the rest of a V2 push: `,null,TOPIC,"mediaEvent",{"data":` before D and `}]` after it.
   Every V2 peer it goes to then gets "[", its join_ref, and that one run of bytes. */
#define VRS__PUSH_HEAD_ROOM 1664 /* the topic is at most sizeof topic_json */

static void vrs__relay_begin_d(vrs_server *server, vrs__json_writer *d) {
    vrs__jw_init(d, server->relay_outer + VRS__PUSH_HEAD_ROOM, server->relay_outer_size - VRS__PUSH_HEAD_ROOM - 2);
}

/* Sends D to one channel; `v2_push` keeps the V2 run around D once built (start it empty). */
static void vrs__relay_deliver(vrs_server *server, vrs__channel *channel, const vrs__json_writer *d,
                               vrs__piece *v2_push) {
    vrs__conn *conn = &server->conns[channel->conn];
    vrs__piece pieces[3];
    if (d->overflowed) return;
    if (conn->vsn != 2) {
        vrs__push_media_event(server, channel, d->buffer, d->length);
        return;
    }
    if (!v2_push->bytes) {
        vrs__piece topic = vrs__channel_topic(server, channel);
        static const char head[] = ",null,", event[] = ",\"mediaEvent\",{\"data\":";
        size_t head_length = sizeof head - 1 + topic.length + sizeof event - 1;
        char *start = d->buffer - head_length;
        VRS_MEMCPY(start, head, sizeof head - 1);
        VRS_MEMCPY(start + sizeof head - 1, topic.bytes, topic.length);
        VRS_MEMCPY(start + sizeof head - 1 + topic.length, event, sizeof event - 1);
        VRS_MEMCPY(d->buffer + d->length, "}]", 2);
        v2_push->bytes = start;
        v2_push->length = head_length + d->length + 2;
    }
    pieces[0] = VRS__LITERAL_PIECE("[");
    pieces[1] = vrs__text_piece(channel->push_ref, channel->push_ref_length);
    pieces[2] = *v2_push;
    vrs__queue_pieces(server, conn, VRS__OP_TEXT, pieces, 3);
}

static void vrs__relay_send_encoded(vrs_server *server, vrs__channel *channel, const vrs__json_writer *d) {
    vrs__piece v2_push;
    v2_push.bytes = NULL;
    v2_push.length = 0;
    vrs__relay_deliver(server, channel, d, &v2_push);
}

static void vrs__relay_encode(vrs_server *server, const vrs__json_writer *e, vrs__json_writer *d) {
    vrs__relay_begin_d(server, d);
    if (e->overflowed) {
        d->overflowed = 1;
        return;
    }
    vrs__jw_string(d, e->buffer, e->length);
}

static void vrs__relay_error(vrs_server *server, vrs__channel *channel, const char *text) {
    vrs__json_writer e, d;
    vrs__jw_init(&e, server->relay_inner, server->relay_inner_size);
    VRS__JW_LITERAL(&e, "{\"type\":\"error\",\"data\":{\"message\":");
    vrs__jw_cstring(&e, text);
    VRS__JW_LITERAL(&e, "}}");
    vrs__relay_encode(server, &e, &d);
    vrs__relay_send_encoded(server, channel, &d);
}

/* Sends D to every relay-joined peer of the room except `except`. */
static void vrs__relay_fan_out_encoded(vrs_server *server, vrs__channel *except, const vrs__json_writer *d) {
    vrs__piece v2_push;
    uint32_t index;
    v2_push.bytes = NULL;
    v2_push.length = 0;
    for (index = server->rooms[except->room].first_peer; index != VRS__NONE;) {
        vrs__channel *peer = &server->channels[index];
        index = peer->next_in_room; /* read first: a send can end a slow client, not this list */
        if (peer != except && peer->relay_joined) vrs__relay_deliver(server, peer, d, &v2_push);
    }
}

/* Sends E to every relay-joined peer of the room except `except`. */
static void vrs__relay_fan_out(vrs_server *server, vrs__channel *except, const vrs__json_writer *e) {
    vrs__json_writer d;
    vrs__relay_encode(server, e, &d);
    vrs__relay_fan_out_encoded(server, except, &d);
}

static void vrs__relay_peer_left_event(vrs_server *server, vrs__channel *channel) {
    vrs__json_writer e;
    vrs__jw_init(&e, server->relay_inner, server->relay_inner_size);
    VRS__JW_LITERAL(&e, "{\"type\":\"peerLeft\",\"data\":{\"peerId\":\"");
    vrs__jw_raw(&e, channel->peer_id, 36);
    VRS__JW_LITERAL(&e, "\"}}");
    vrs__relay_fan_out(server, channel, &e);
}

/* The relay-joined peer of from's room, other than from, whose id is these 36 bytes. */
static vrs__channel *vrs__relay_find_peer(vrs_server *server, vrs__channel *from, const char *id) {
    uint32_t index;
    for (index = server->rooms[from->room].first_peer; index != VRS__NONE; index = server->channels[index].next_in_room) {
        vrs__channel *peer = &server->channels[index];
        if (peer != from && peer->relay_joined && memcmp(peer->peer_id, id, 36) == 0) return peer;
    }
    return NULL;
}

static vrs__channel *vrs__relay_find_target(vrs_server *server, vrs__channel *from, vrs__json_slice to) {
    char id[40];
    if (vrs__json_kind_of(to) != VRS__JSON_STRING || vrs__json_string_decode(to, id, sizeof id) != 36) return NULL;
    return vrs__relay_find_peer(server, from, id);
}

/* The members of a relay event E the relay looks at, read in one walk over E (the last of a
   repeated key wins, as in vrs__json_object_get). */
typedef struct vrs__relay_event {
    vrs__json_slice type, to, data;
    int has_type, has_to, has_data;
} vrs__relay_event;

static void vrs__relay_note_member(vrs__relay_event *e, vrs__json_slice key, vrs__json_slice value) {
    if (vrs__json_string_equals(key, "type")) {
        e->type = value;
        e->has_type = 1;
    } else if (vrs__json_string_equals(key, "to")) {
        e->to = value;
        e->has_to = 1;
    } else if (vrs__json_string_equals(key, "data")) {
        e->data = value;
        e->has_data = 1;
    }
}

/* From the members validation recorded (count >= 0) when they all fit, else by walking E. */
static void vrs__relay_read_event(vrs__json_slice event, const vrs__json_member *members, int count,
                                  int capacity, vrs__relay_event *e) {
    vrs__json_cursor cursor;
    vrs__json_slice key, value;
    VRS_MEMSET(e, 0, sizeof *e);
    if (count >= 0 && count <= capacity) {
        int i;
        for (i = 0; i < count; i++) vrs__relay_note_member(e, members[i].key, members[i].value);
        return;
    }
    if (!vrs__json_enter(event, &cursor)) return;
    while (vrs__json_next_member(&cursor, &key, &value)) vrs__relay_note_member(e, key, value);
}

/* M from E.data.metadata (null when absent), checked against the size limit. */
static int vrs__relay_metadata(vrs_server *server, vrs__channel *channel, const vrs__relay_event *event,
                               vrs__json_slice *metadata) {
    metadata->start = "null";
    metadata->length = 4;
    if (event->has_data && vrs__json_kind_of(event->data) == VRS__JSON_OBJECT)
        vrs__json_object_get(event->data, "metadata", metadata);
    if (metadata->length > (size_t)server->desc.max_metadata_size) {
        vrs__relay_error(server, channel, "metadata too large");
        return 0;
    }
    return 1;
}

/* Stores M; when the pool cannot hold it the sender hears so and nothing changes. */
static int vrs__relay_store_metadata(vrs_server *server, vrs__channel *channel, vrs__json_slice m) {
    if (vrs__json_is_null(m)) {
        vrs__metadata_clear(server, channel);
        return 1;
    }
    if (!vrs__metadata_store(server, channel, m.start, m.length)) {
        vrs__log(server, VRS_LOG_POOL_EXHAUSTED, "relay metadata");
        vrs__relay_error(server, channel, "the server has no room for this metadata now");
        return 0;
    }
    return 1;
}

static void vrs__relay_join(vrs_server *server, vrs__channel *channel, const vrs__relay_event *event) {
    vrs__json_slice m;
    vrs__json_writer e;
    uint32_t index;
    int first = 1;
    if (channel->relay_joined) {
        vrs__relay_error(server, channel, "already joined");
        return;
    }
    if (!vrs__relay_metadata(server, channel, event, &m) || !vrs__relay_store_metadata(server, channel, m)) return;
    channel->relay_joined = 1;
    /* the room's list keeps relay peers in the order they joined the relay */
    vrs__room_unlink(server, channel);
    vrs__room_append(server, channel);
    vrs__jw_init(&e, server->relay_inner, server->relay_inner_size);
    VRS__JW_LITERAL(&e, "{\"type\":\"peerAccepted\",\"data\":{\"id\":\"");
    vrs__jw_raw(&e, channel->peer_id, 36);
    VRS__JW_LITERAL(&e, "\",\"peersInRoom\":[");
    for (index = server->rooms[channel->room].first_peer; index != VRS__NONE; index = server->channels[index].next_in_room) {
        vrs__channel *peer = &server->channels[index];
        if (peer == channel || !peer->relay_joined) continue;
        if (!first) VRS__JW_LITERAL(&e, ",");
        VRS__JW_LITERAL(&e, "{\"id\":\"");
        vrs__jw_raw(&e, peer->peer_id, 36);
        VRS__JW_LITERAL(&e, "\",\"metadata\":");
        vrs__jw_metadata(server, &e, peer);
        VRS__JW_LITERAL(&e, "}");
        first = 0;
    }
    VRS__JW_LITERAL(&e, "]}}");
    {
        vrs__json_writer d;
        vrs__relay_encode(server, &e, &d);
        vrs__relay_send_encoded(server, channel, &d);
    }
    vrs__jw_init(&e, server->relay_inner, server->relay_inner_size);
    VRS__JW_LITERAL(&e, "{\"type\":\"peerJoined\",\"data\":{\"peer\":{\"id\":\"");
    vrs__jw_raw(&e, channel->peer_id, 36);
    VRS__JW_LITERAL(&e, "\",\"metadata\":");
    vrs__jw_raw(&e, m.start, m.length);
    VRS__JW_LITERAL(&e, "}}}");
    vrs__relay_fan_out(server, channel, &e);
}

static void vrs__relay_update_metadata(vrs_server *server, vrs__channel *channel, const vrs__relay_event *event) {
    vrs__json_slice m;
    vrs__json_writer e;
    if (!vrs__relay_metadata(server, channel, event, &m) || !vrs__relay_store_metadata(server, channel, m)) return;
    vrs__jw_init(&e, server->relay_inner, server->relay_inner_size);
    VRS__JW_LITERAL(&e, "{\"type\":\"peerUpdated\",\"data\":{\"peerId\":\"");
    vrs__jw_raw(&e, channel->peer_id, 36);
    VRS__JW_LITERAL(&e, "\",\"metadata\":");
    vrs__jw_raw(&e, m.start, m.length);
    VRS__JW_LITERAL(&e, "}}");
    vrs__relay_fan_out(server, channel, &e);
}

/* Writes D for a custom event of `channel` carrying X and sends it to `target`, or to the room
   when target is NULL. X is JSON text, or (x_is_escaped) JSON text as a string escapes it. */
static void vrs__relay_send_custom(vrs_server *server, vrs__channel *channel, vrs__channel *target, vrs__json_slice x,
                                   int x_is_escaped) {
    vrs__json_writer d;
    /* the most frequent event: D is written straight, E's fixed parts already escaped */
    vrs__relay_begin_d(server, &d);
    VRS__JW_LITERAL(&d, "\"{\\\"type\\\":\\\"custom\\\",\\\"from\\\":\\\"");
    vrs__jw_raw(&d, channel->peer_id, 36);
    VRS__JW_LITERAL(&d, "\\\",\\\"data\\\":");
    if (x_is_escaped) vrs__jw_raw(&d, x.start, x.length);
    else vrs__jw_string_content(&d, x.start, x.length);
    VRS__JW_LITERAL(&d, "}\"");
    if (target) vrs__relay_send_encoded(server, target, &d);
    else vrs__relay_fan_out_encoded(server, channel, &d);
}

static void vrs__relay_custom(vrs_server *server, vrs__channel *channel, const vrs__relay_event *event) {
    vrs__channel *target = NULL;
    if (event->has_to && !(target = vrs__relay_find_target(server, channel, event->to))) {
        vrs__relay_error(server, channel, "unknown target peer");
        return;
    }
    vrs__relay_send_custom(server, channel, target, event->has_data ? event->data : vrs__slice("null", 4), 0);
}

/* The text of a string E holds, read in escaped mode (`\"text\"`), if it has no escape of E's. */
static int vrs__relay_plain_escaped_string(vrs__json_slice token, vrs__json_slice *text) {
    if (token.length < 4 || !vrs__json_is_quote_escaped(token.start, token.start + 2) ||
        !vrs__json_is_quote_escaped(token.start + token.length - 2, token.start + token.length))
        return 0;
    text->start = token.start + 2;
    text->length = token.length - 4;
    return !memchr(text->start, '\\', text->length);
}

static int vrs__relay_slice_is(vrs__json_slice text, const char *literal, size_t length) {
    return text.length == length && memcmp(text.start, literal, length) == 0;
}

/* vrs__relay_note_member for E read in escaped mode; 0 when the key has escapes of E's own
   (the caller then reads E decoded, so that such a key means what it says). */
static int vrs__relay_note_escaped_member(vrs__relay_event *e, vrs__json_slice key, vrs__json_slice value) {
    vrs__json_slice name;
    if (!vrs__relay_plain_escaped_string(key, &name)) return 0;
    if (vrs__relay_slice_is(name, "type", 4)) {
        e->type = value;
        e->has_type = 1;
    } else if (vrs__relay_slice_is(name, "to", 2)) {
        e->to = value;
        e->has_to = 1;
    } else if (vrs__relay_slice_is(name, "data", 4)) {
        e->data = value;
        e->has_data = 1;
    }
    return 1;
}

/* The most frequent event, relayed without decoding D: a custom event (from a joined peer)
   whose top-level keys and type have no escapes, and whose E stands in D with only the escapes
   JSON.stringify writes. X passes on as D escapes it. 0: the event is not of that kind, and
   the caller reads it the ordinary way, which also gives every error its answer. */
static int vrs__relay_custom_in_place(vrs_server *server, vrs__channel *channel, vrs__json_slice d) {
    vrs__json_member members[8];
    vrs__json_record record = vrs__json_record_of(members, 8);
    vrs__relay_event e;
    vrs__json_slice text;
    vrs__channel *target = NULL;
    int i;
    d = vrs__json_trim(d);
    if (!channel->relay_joined || d.length < 4 || d.start[1] != '{') return 0;
    if (!vrs__json_validate_recording(d.start + 1, d.length - 2, VRS__MAX_JSON_DEPTH, 1, &record) ||
        record.count > 8)
        return 0;
    VRS_MEMSET(&e, 0, sizeof e);
    for (i = 0; i < record.count; i++)
        if (!vrs__relay_note_escaped_member(&e, members[i].key, members[i].value)) return 0;
    if (!e.has_type || !vrs__relay_plain_escaped_string(e.type, &text) || !vrs__relay_slice_is(text, "custom", 6))
        return 0;
    if (e.has_to) {
        if (!vrs__relay_plain_escaped_string(e.to, &text) || text.length != 36) return 0;
        if (!(target = vrs__relay_find_peer(server, channel, text.start))) {
            vrs__relay_error(server, channel, "unknown target peer");
            return 1;
        }
    }
    vrs__relay_send_custom(server, channel, target, e.has_data ? e.data : vrs__slice("null", 4), 1);
    return 1;
}

static void vrs__relay_on_media_event(vrs_server *server, vrs_room room, vrs_peer peer, const char *data,
                                      size_t length, void *user_data) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    vrs__json_slice d = vrs__slice(data, length), event, type;
    vrs__relay_event e;
    vrs__json_member members[8];
    int member_count = 0;
    (void)room;
    (void)user_data;
    if (!channel) return;
    if (vrs__json_kind_of(d) == VRS__JSON_STRING) {
        if (vrs__relay_custom_in_place(server, channel, d)) return;
        /* as the Membrane client sends it: a JSON string holding the serialized event */
        long decoded = vrs__json_string_decode(d, server->relay_decoded, server->relay_decoded_size);
        if (decoded < 0 || !vrs__json_validate_members(server->relay_decoded, (size_t)decoded, VRS__MAX_JSON_DEPTH,
                                                       members, 8, &member_count)) {
            vrs__relay_error(server, channel, "data is not a serialized JSON event");
            return;
        }
        event = vrs__slice(server->relay_decoded, (size_t)decoded);
    } else {
        event = d;
        member_count = -1; /* D itself is E, validated with the message: walk it */
    }
    if (vrs__json_kind_of(event) != VRS__JSON_OBJECT) {
        vrs__relay_error(server, channel, "the event is not a JSON object");
        return;
    }
    vrs__relay_read_event(event, members, member_count, 8, &e);
    type = e.type;
    if (!e.has_type || vrs__json_kind_of(type) != VRS__JSON_STRING) {
        vrs__relay_error(server, channel, "the event has no type");
        return;
    }
    if (vrs__json_string_equals(type, "custom") && channel->relay_joined) {
        vrs__relay_custom(server, channel, &e); /* the common case first */
    } else if (vrs__json_string_equals(type, "join")) {
        vrs__relay_join(server, channel, &e);
    } else if (!vrs__json_string_equals(type, "leave") && !vrs__json_string_equals(type, "updatePeerMetadata") &&
               !vrs__json_string_equals(type, "custom")) {
        vrs__relay_error(server, channel, "unknown event type");
    } else if (!channel->relay_joined) {
        vrs__relay_error(server, channel, "join the room first");
    } else if (vrs__json_string_equals(type, "leave")) {
        vrs__relay_peer_left_event(server, channel);
        channel->relay_joined = 0;
        vrs__metadata_clear(server, channel);
    } else if (vrs__json_string_equals(type, "updatePeerMetadata")) {
        vrs__relay_update_metadata(server, channel, &e);
    } else {
        vrs__relay_custom(server, channel, &e);
    }
}

static void vrs__relay_on_peer_left(vrs_server *server, vrs_room room, vrs_peer peer, void *user_data) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    vrs__room *r = vrs__room_lookup(server, room);
    (void)user_data;
    if (channel && r && channel->relay_joined && !r->closing) vrs__relay_peer_left_event(server, channel);
}

/* ---------------------------------------------------------------------------------------------
   Rooms and peers: the host's functions
   ------------------------------------------------------------------------------------------- */

/* D must be one JSON value: a client could not parse the push otherwise. */
static vrs_result vrs__check_data(const char *data, size_t length) {
    return data && vrs__json_validate(data, length, VRS__MAX_JSON_DEPTH) ? VRS_OK : VRS_ERROR_INVALID_ARGUMENT;
}

VRS_API vrs_result vrs_peer_send(vrs_server *server, vrs_peer peer, const char *data, size_t length) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    if (!channel) return VRS_ERROR_INVALID_CONNECTION;
    if (vrs__check_data(data, length) != VRS_OK) return VRS_ERROR_INVALID_ARGUMENT;
    return vrs__push_media_event(server, channel, data, length);
}

VRS_API vrs_result vrs_room_broadcast_except(vrs_server *server, vrs_room room, vrs_peer except,
                                             const char *data, size_t length) {
    vrs__room *r = vrs__room_lookup(server, room);
    vrs__channel *skip = vrs__channel_lookup(server, except);
    uint32_t index;
    vrs_result result = VRS_OK;
    if (!r) return VRS_ERROR_INVALID_CONNECTION;
    if (vrs__check_data(data, length) != VRS_OK) return VRS_ERROR_INVALID_ARGUMENT;
    for (index = r->first_peer; index != VRS__NONE;) {
        vrs__channel *peer = &server->channels[index];
        index = peer->next_in_room;
        if (peer != skip) {
            vrs_result sent = vrs__push_media_event(server, peer, data, length);
            if (sent != VRS_OK && sent != VRS_ERROR_NOT_OPEN) result = sent;
        }
    }
    return result;
}

VRS_API vrs_result vrs_room_broadcast(vrs_server *server, vrs_room room, const char *data, size_t length) {
    vrs_peer none;
    none.id = 0;
    return vrs_room_broadcast_except(server, room, none, data, length);
}

/* Phoenix names the events of a channel's own life phx_join, phx_reply, phx_leave, phx_close
   and phx_error: a client takes a push of any phx_ name as one of them. */
static int vrs__is_reserved_event(const char *event) {
    return strncmp(event, "phx_", 4) == 0;
}

VRS_API vrs_result vrs_peer_push(vrs_server *server, vrs_peer peer, const char *event, const char *payload,
                                 size_t length) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    if (!channel) return VRS_ERROR_INVALID_CONNECTION;
    if (!event || !vrs__utf8_is_valid(VRS__CAST(const uint8_t *, (const void *)event), strlen(event)) ||
        vrs__check_data(payload, length) != VRS_OK)
        return VRS_ERROR_INVALID_ARGUMENT; /* the event name goes into a text frame: UTF-8 only */
    if (vrs__is_reserved_event(event)) return VRS_ERROR_RESERVED_EVENT;
    if (vrs__json_kind_of(vrs__slice(payload, length)) != VRS__JSON_OBJECT) return VRS_ERROR_WRONG_TYPE;
    {
        char event_json[512];
        vrs__json_writer e;
        vrs__piece body = vrs__text_piece(payload, length);
        vrs__jw_init(&e, event_json, sizeof event_json);
        vrs__jw_cstring(&e, event);
        if (e.overflowed) return VRS_ERROR_TOO_LARGE;
        return vrs__channel_push(server, channel, vrs__text_piece(e.buffer, e.length), &body, 1);
    }
}

VRS_API vrs_result vrs_peer_push_binary(vrs_server *server, vrs_peer peer, const char *event,
                                        const void *payload, size_t length) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    vrs__conn *conn;
    size_t topic_length, event_length;
    char join_ref[VRS__REF_MAX];
    long join_ref_length;
    uint8_t sizes[4];
    vrs__piece pieces[6];
    if (!channel) return VRS_ERROR_INVALID_CONNECTION;
    conn = &server->conns[channel->conn];
    if (conn->vsn != 2) return VRS_ERROR_INVALID_ARGUMENT;
    /* the kind-0 server push: 0, jr_len, topic_len, event_len, join_ref, topic, event, payload;
       the join_ref is the string itself: its JSON text decoded */
    topic_length = 5 + server->rooms[channel->room].id_length;
    event_length = event ? strlen(event) : 0;
    join_ref_length = vrs__json_string_decode(vrs__slice(channel->push_ref, channel->push_ref_length), join_ref,
                                              sizeof join_ref);
    if (join_ref_length < 0 || event_length == 0 || event_length > 255 || topic_length > 255)
        return VRS_ERROR_INVALID_ARGUMENT;
    if (vrs__is_reserved_event(event)) return VRS_ERROR_RESERVED_EVENT;
    sizes[0] = 0;
    sizes[1] = (uint8_t)join_ref_length;
    sizes[2] = (uint8_t)topic_length;
    sizes[3] = (uint8_t)event_length;
    pieces[0].bytes = sizes;
    pieces[0].length = 4;
    pieces[1] = vrs__text_piece(join_ref, (size_t)join_ref_length);
    pieces[2] = VRS__LITERAL_PIECE("room:");
    pieces[3] = vrs__text_piece(vrs__room_id(server, channel->room), topic_length - 5);
    pieces[4] = vrs__text_piece(event, event_length);
    pieces[5].bytes = payload;
    pieces[5].length = length;
    return vrs__queue_pieces(server, conn, VRS__OP_BINARY, pieces, 6);
}

/* Ends a channel from the server's side: it leaves its room (the room logic hears it), then its
   client gets `event` (phx_close or phx_error) with `payload` for the channel's topic. */
static void vrs__channel_end(vrs_server *server, vrs__channel *channel, vrs__piece event, const char *payload) {
    vrs__conn *conn = &server->conns[channel->conn];
    char topic[sizeof server->topic_json], join_ref[VRS__REF_MAX];
    vrs__piece topic_piece = vrs__channel_topic(server, channel);
    size_t join_ref_length = channel->join_ref_length;
    /* copies: the room and its channel are gone, and callbacks may push elsewhere, before the
       ending message is written */
    VRS_MEMCPY(topic, topic_piece.bytes, topic_piece.length);
    VRS_MEMCPY(join_ref, channel->join_ref, join_ref_length);
    vrs__channel_remove(server, channel); /* the last one destroys the room */
    vrs__channel_end_message(server, conn, join_ref, join_ref_length, vrs__text_piece(topic, topic_piece.length),
                             event, payload);
}

VRS_API vrs_result vrs_room_close(vrs_server *server, vrs_room room) {
    vrs__room *r = vrs__room_lookup(server, room);
    uint32_t index = r ? (uint32_t)(r - server->rooms) : VRS__NONE;
    if (!r) return VRS_ERROR_INVALID_CONNECTION;
    r->closing = 1;
    while (r->in_use && r->first_peer != VRS__NONE) {
        vrs__channel_end(server, &server->channels[r->first_peer], VRS__LITERAL_PIECE("\"phx_error\""),
                         "{\"reason\":\"room closed\"}");
        if (!server->rooms[index].in_use) break;
    }
    return VRS_OK;
}

VRS_API vrs_result vrs_peer_close(vrs_server *server, vrs_peer peer, const char *reason) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    char payload[6 * VRS_PEER_CLOSE_REASON_MAX + 16];
    vrs_json_writer w;
    if (!channel) return VRS_ERROR_INVALID_CONNECTION;
    if (reason && strlen(reason) > VRS_PEER_CLOSE_REASON_MAX) return VRS_ERROR_TOO_LARGE;
    vrs_json_writer_init(&w, payload, sizeof payload);
    vrs_json_begin_object(&w);
    if (reason) {
        vrs_json_key(&w, "reason");
        vrs_json_cstring(&w, reason);
    }
    vrs_json_end_object(&w);
    if (vrs_json_finish(&w, NULL) != VRS_OK) return VRS_ERROR_INVALID_ARGUMENT; /* not UTF-8 */
    vrs__channel_end(server, channel, VRS__LITERAL_PIECE("\"phx_close\""), payload);
    return VRS_OK;
}

VRS_API int vrs_rooms(vrs_server *server, vrs_room *rooms, int capacity) {
    int count = 0, i;
    if (!server || !rooms) return 0;
    for (i = 0; i < server->desc.max_rooms && count < capacity; i++)
        if (server->rooms[i].in_use) rooms[count++] = vrs__room_handle(server, (uint32_t)i);
    return count;
}

VRS_API vrs_room vrs_find_room(vrs_server *server, const char *room_id) {
    vrs_room none;
    uint32_t room;
    none.id = 0;
    if (!server || !room_id) return none;
    room = vrs__room_find(server, room_id, strlen(room_id));
    return room == VRS__NONE ? none : vrs__room_handle(server, room);
}

VRS_API const char *vrs_room_name(vrs_server *server, vrs_room room) {
    vrs__room *r = vrs__room_lookup(server, room);
    return r ? vrs__room_id(server, (uint32_t)(r - server->rooms)) : "";
}

VRS_API int vrs_room_peer_count(vrs_server *server, vrs_room room) {
    vrs__room *r = vrs__room_lookup(server, room);
    return r ? r->peer_count : 0;
}

VRS_API int vrs_room_peers(vrs_server *server, vrs_room room, vrs_peer *peers, int capacity) {
    vrs__room *r = vrs__room_lookup(server, room);
    uint32_t index;
    int count = 0;
    if (!r) return 0;
    for (index = r->first_peer; index != VRS__NONE && count < capacity; index = server->channels[index].next_in_room)
        peers[count++] = vrs__peer_handle(server, &server->channels[index]);
    return count;
}

VRS_API vrs_peer vrs_find_peer(vrs_server *server, const char *peer_id) {
    vrs_peer none;
    int i;
    none.id = 0;
    if (!server || !peer_id || strlen(peer_id) != 36) return none;
    for (i = 0; i < server->desc.max_channels; i++)
        if (server->channels[i].in_use && memcmp(server->channels[i].peer_id, peer_id, 36) == 0)
            return vrs__peer_handle(server, &server->channels[i]);
    return none;
}

VRS_API const char *vrs_peer_id(vrs_server *server, vrs_peer peer) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    return channel ? channel->peer_id : "";
}

VRS_API vrs_room vrs_peer_room(vrs_server *server, vrs_peer peer) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    vrs_room none;
    none.id = 0;
    return channel ? vrs__room_handle(server, channel->room) : none;
}

VRS_API vrs_conn vrs_peer_conn(vrs_server *server, vrs_peer peer) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    vrs_conn none;
    none.id = 0;
    return channel ? vrs__handle(server, &server->conns[channel->conn]) : none;
}

VRS_API void *vrs_room_user_data(vrs_server *server, vrs_room room) {
    vrs__room *r = vrs__room_lookup(server, room);
    return r ? r->user_data : NULL;
}

VRS_API vrs_result vrs_room_set_user_data(vrs_server *server, vrs_room room, void *user_data) {
    vrs__room *r = vrs__room_lookup(server, room);
    if (!r) return VRS_ERROR_INVALID_CONNECTION;
    r->user_data = user_data;
    return VRS_OK;
}

VRS_API void *vrs_peer_user_data(vrs_server *server, vrs_peer peer) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    return channel ? channel->user_data : NULL;
}

VRS_API vrs_result vrs_peer_set_user_data(vrs_server *server, vrs_peer peer, void *user_data) {
    vrs__channel *channel = vrs__channel_lookup(server, peer);
    if (!channel) return VRS_ERROR_INVALID_CONNECTION;
    channel->user_data = user_data;
    return VRS_OK;
}

/* ---------------------------------------------------------------------------------------------
   The wake-up: a descriptor other threads and signal handlers make readable

   What depends on the system is in these four functions; a port adds its own variant of the
   four and nothing else. Every variant guarantees:
   - vrs__wake_open: wake_fds[0] is a descriptor that poll() and epoll report readable (POLLIN)
     while a wake is pending, wake_fds[1] the one vrs__wake_signal writes to (they may be the
     same); both non-blocking and close-on-exec. Returns 0 when the system refuses.
   - vrs__wake_signal: makes a wake pending. Safe from any number of threads at once and from
     signal handlers (async-signal-safe system calls only), never blocks, writes nothing in
     the server's memory;
     when a wake cannot be recorded because so many are pending already, that is no error: it
     coalesces with them. (vrs_wake keeps errno for it.)
   - vrs__wake_drain: on the server's thread, without blocking, clears every pending wake, so
     the descriptor stays quiet until the next signal; a signal that comes during or after the
     drain leaves it readable again, so no wake is ever lost.
   - vrs__wake_close: closes what vrs__wake_open made.
   Outside these four, only wake_fds[0] is used: vrs_poll_fds lists it second, vrs_create puts
   it in the epoll set. (Where poll() watches sockets alone, as WSAPoll does, a variant can use
   a pair of connected loopback sockets.)
   ------------------------------------------------------------------------------------------- */

#define VRS__WAKE_TAG 0xFFFFFFFEu /* epoll: the wake-up's event (slots are far below it) */

#ifdef VRS__EVENTFD

static int vrs__wake_open(vrs_server *server) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    server->wake_fds[0] = server->wake_fds[1] = fd;
    return fd >= 0;
}

static void vrs__wake_signal(const vrs_server *server) {
    uint64_t one = 1;
    ssize_t written = write(server->wake_fds[1], &one, sizeof one);
    (void)written; /* EAGAIN only when the counter is full: wakes are pending */
}

static void vrs__wake_drain(vrs_server *server) {
    uint64_t count;
    ssize_t got = read(server->wake_fds[0], &count, sizeof count); /* the counter back to 0 */
    (void)got;
}

static void vrs__wake_close(vrs_server *server) {
    if (server->wake_fds[0] >= 0) close(server->wake_fds[0]);
    server->wake_fds[0] = server->wake_fds[1] = -1;
}

#elif defined(_WIN32) /* a loopback UDP socket that sends to itself: WSAPoll watches sockets only */

static int vrs__wake_open(vrs_server *server) {
    struct sockaddr_in address;
    socklen_t length = sizeof address;
    vrs__socket s = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    server->wake_fds[0] = server->wake_fds[1] = s;
    if (s == VRS__NO_SOCKET) return 0;
    VRS_MEMSET(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, VRS__CAST(struct sockaddr *, (void *)&address), sizeof address) != 0 ||
        getsockname(s, VRS__CAST(struct sockaddr *, (void *)&address), &length) != 0 ||
        connect(s, VRS__CAST(struct sockaddr *, (void *)&address), sizeof address) != 0) {
        vrs__socket_close(s);
        server->wake_fds[0] = server->wake_fds[1] = VRS__NO_SOCKET;
        return 0;
    }
    vrs__socket_prepare(s);
    return 1;
}

static void vrs__wake_signal(const vrs_server *server) {
    char byte = 1;
    send(server->wake_fds[1], &byte, 1, 0); /* WSAEWOULDBLOCK: the buffer is full of pending wakes */
}

static void vrs__wake_drain(vrs_server *server) {
    char bytes[16];
    while (recv(server->wake_fds[0], bytes, sizeof bytes, 0) > 0) {
    }
}

static void vrs__wake_close(vrs_server *server) {
    if (server->wake_fds[0] != VRS__NO_SOCKET) vrs__socket_close(server->wake_fds[0]);
    server->wake_fds[0] = server->wake_fds[1] = VRS__NO_SOCKET;
}

#else /* a self-pipe */

static int vrs__wake_open(vrs_server *server) {
    int i;
    if (pipe(server->wake_fds) != 0) {
        server->wake_fds[0] = server->wake_fds[1] = -1;
        return 0;
    }
    for (i = 0; i < 2; i++) {
        fcntl(server->wake_fds[i], F_SETFL, fcntl(server->wake_fds[i], F_GETFL, 0) | O_NONBLOCK);
        fcntl(server->wake_fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 1;
}

static void vrs__wake_signal(const vrs_server *server) {
    char byte = 1;
    ssize_t written = write(server->wake_fds[1], &byte, 1);
    (void)written; /* EAGAIN: the pipe is full of pending wakes */
}

static void vrs__wake_drain(vrs_server *server) {
    char bytes[512];
    while (read(server->wake_fds[0], bytes, sizeof bytes) == (ssize_t)sizeof bytes) {
    }
}

static void vrs__wake_close(vrs_server *server) {
    int i;
    for (i = 0; i < 2; i++)
        if (server->wake_fds[i] >= 0) close(server->wake_fds[i]);
    server->wake_fds[0] = server->wake_fds[1] = -1;
}

#endif

VRS_API void vrs_wake(vrs_server *server) {
    int saved_errno = errno; /* a signal handler must leave errno as it found it */
    if (server) vrs__wake_signal(server);
    errno = saved_errno;
}

/* Descriptors vrs_create opened, closed (by vrs_destroy, or when vrs_create fails). */
static void vrs__close_descriptors(vrs_server *server) {
    if (server->listen_fd != VRS__NO_SOCKET) vrs__socket_close(server->listen_fd);
    vrs__random_close(server->random_fd);
    vrs__wake_close(server);
#ifdef VRS_USE_EPOLL
    if (server->epoll_fd >= 0) close(server->epoll_fd);
#endif
}

/* ---------------------------------------------------------------------------------------------
   Creating the server
   ------------------------------------------------------------------------------------------- */

static int vrs__default(int value, int fallback) { return value == 0 ? fallback : value; }

static vrs_desc vrs__resolve_defaults(const vrs_desc *given) {
    vrs_desc d = *given;
    if (!d.host) d.host = "127.0.0.1";
    d.port = vrs__default(d.port, 4000);
    d.max_connections = vrs__default(d.max_connections, 1024);
    d.max_message_size = vrs__default(d.max_message_size, 65536);
    d.max_request_size = vrs__default(d.max_request_size, 8192);
    d.send_queue_size = vrs__default(d.send_queue_size, 262144);
    if (d.buffer_pool_size == 0) {
        /* 16 KiB a connection, and never less than one largest message each way */
        long long bytes = (long long)d.max_connections * 16384;
        long long floor = 2LL * ((long long)d.max_message_size + d.send_queue_size) + 65536;
        if (bytes < floor) bytes = floor;
        d.buffer_pool_size = bytes > 0x7FFFFFFF ? 0x7FFFFFFF : (int)bytes;
    }
    d.handshake_timeout_ms = vrs__default(d.handshake_timeout_ms, 10000);
    d.idle_timeout_ms = vrs__default(d.idle_timeout_ms, 60000);
    d.close_timeout_ms = vrs__default(d.close_timeout_ms, 5000);
    d.slow_consumer_timeout_ms = vrs__default(d.slow_consumer_timeout_ms, 20000);
    if (!d.socket_path) d.socket_path = "/socket";
    d.max_channels_per_socket = vrs__default(d.max_channels_per_socket, 100);
    if (d.max_channels == 0) /* twice the connections, as many as the table can hold */
        d.max_channels = d.max_connections > 0 && d.max_connections <= (int)(VRS__INDEX_MASK / 2)
                             ? d.max_connections * 2 : (int)VRS__INDEX_MASK;
    d.max_rooms = vrs__default(d.max_rooms, d.max_connections);
    d.max_peers_per_room = vrs__default(d.max_peers_per_room, 32);
    d.max_room_id_size = vrs__default(d.max_room_id_size, 64);
    d.max_metadata_size = vrs__default(d.max_metadata_size, 1024);
    if (!d.room_logic.on_room_created && !d.room_logic.on_room_destroyed && !d.room_logic.on_peer_joined &&
        !d.room_logic.on_peer_left && !d.room_logic.on_media_event) {
        d.room_logic.on_media_event = vrs__relay_on_media_event;
        d.room_logic.on_peer_left = vrs__relay_on_peer_left;
    }
    if (d.disable_phoenix) d.max_channels = d.max_rooms = 0; /* no tables for what cannot be used */
    return d;
}

/* 1 when `value` of desc.`field` lies in [low, high]; else 0, with the rule written into `why`. */
static int vrs__field_in_range(const char *field, int value, int low, int high, char *why, size_t size) {
    if (value >= low && value <= high) return 1;
    if (high == 0x7FFFFFFF) snprintf(why, size, "desc.%s = %d: at least %d", field, value, low);
    else snprintf(why, size, "desc.%s = %d: %d to %d", field, value, low, high);
    return 0;
}

/* 1 when a description (its defaults resolved) can make a server; else 0, with the first field
   out of range and its rule written into `why` for the log line. */
static int vrs__desc_check(const vrs_desc *d, char *why, size_t size) {
#define VRS__FIELD_RANGE(field, low, high)                                                       \
    if (!vrs__field_in_range(#field, d->field, (low), (high), why, size)) return 0
    VRS__FIELD_RANGE(port, VRS_PORT_ANY, 65535);
    VRS__FIELD_RANGE(max_connections, 1, VRS__MAX_CONNECTIONS);
    VRS__FIELD_RANGE(max_message_size, 1, 0x7FFFFFFF);
    VRS__FIELD_RANGE(max_request_size, 256, 0x7FFFFFFF);
    VRS__FIELD_RANGE(send_queue_size, 256, 0x7FFFFFFF);
    VRS__FIELD_RANGE(buffer_pool_size, 4 * VRS_BLOCK_SIZE, 0x7FFFFFFF);
    VRS__FIELD_RANGE(handshake_timeout_ms, 1, 0x7FFFFFFF);
    VRS__FIELD_RANGE(idle_timeout_ms, 1, 0x7FFFFFFF);
    VRS__FIELD_RANGE(close_timeout_ms, 1, 0x7FFFFFFF);
    VRS__FIELD_RANGE(slow_consumer_timeout_ms, 1, 0x7FFFFFFF);
    if (d->disable_phoenix) return 1;
    if (d->socket_path[0] != '/' || strlen(d->socket_path) >= 200) {
        snprintf(why, size, "desc.socket_path \"%.40s\": a path starting with / and shorter than 200 bytes",
                 d->socket_path);
        return 0;
    }
    VRS__FIELD_RANGE(max_channels_per_socket, 1, 0x7FFFFFFF);
    VRS__FIELD_RANGE(max_channels, 1, (int)VRS__INDEX_MASK);
    VRS__FIELD_RANGE(max_rooms, 1, (int)VRS__INDEX_MASK);
    VRS__FIELD_RANGE(max_peers_per_room, 1, 0x7FFFFFFF);
    VRS__FIELD_RANGE(max_room_id_size, 1, 250);
    VRS__FIELD_RANGE(max_metadata_size, 1, 65535);
    if (d->allowed_origins) VRS__FIELD_RANGE(allowed_origin_count, 0, 0x7FFFFFFF);
#undef VRS__FIELD_RANGE
    return 1;
}

static int vrs__desc_is_valid(const vrs_desc *d) {
    char why[160];
    return vrs__desc_check(d, why, sizeof why);
}

/* The hard cap of a send queue. Flow control keeps a reading client's queue near
   send_queue_size: it passes it by at most one message from each sender not yet paused, and
   a sender reaches a client through a room of at most max_peers_per_room peers. A queue
   that grows past that by the cap holds bytes a client is not reading. */
static size_t vrs__queue_limit(const vrs_desc *d) {
    uint64_t limit = 2 * (uint64_t)d->send_queue_size +
                     ((uint64_t)d->max_peers_per_room + 1) * ((uint64_t)d->max_message_size + 1024);
    return limit > (uint64_t)(size_t)-1 ? (size_t)-1 : (size_t)limit;
}

/* One block holds everything; these are the offsets of its parts. */
typedef struct vrs__layout {
    size_t conns, free_slots, active, pollfds, pool_next, read_buffer, assembly, pool_data, total;
    size_t channels, free_channels, rooms, free_rooms, room_buckets, room_ids;
    size_t relay_inner, relay_outer, relay_decoded;
    size_t relay_inner_size, relay_outer_size, relay_decoded_size;
    uint32_t slot_count, block_count, bucket_count;
    size_t assembly_size;
    int fits;                  /* 0: some size passed SIZE_MAX (32-bit size_t): the plan is void */
} vrs__layout;

/* Size arithmetic that cannot wrap: a result past SIZE_MAX clears *fits (and gives 0). */
static size_t vrs__size_add(size_t a, size_t b, int *fits) {
    if (a > (size_t)-1 - b) {
        *fits = 0;
        return 0;
    }
    return a + b;
}

static size_t vrs__size_mul(size_t a, size_t b, int *fits) {
    if (b != 0 && a > (size_t)-1 / b) {
        *fits = 0;
        return 0;
    }
    return a * b;
}

static size_t vrs__size_max(size_t a, size_t b) { return a > b ? a : b; }

/* Places `count` items of `size` bytes at the next multiple of `alignment` after *at; returns
   their offset and moves *at past them. */
static size_t vrs__place(size_t *at, size_t count, size_t size, size_t alignment, int *fits) {
    size_t offset = vrs__size_mul(vrs__size_add(*at, alignment - 1, fits) / alignment, alignment, fits);
    *at = vrs__size_add(offset, vrs__size_mul(count, size, fits), fits);
    return offset;
}

static vrs__layout vrs__plan(const vrs_desc *d) {
    vrs__layout l;
    size_t at = sizeof(vrs_server);
    int *fits = &l.fits;
    l.fits = 1;
    l.slot_count = (uint32_t)d->max_connections + VRS_REJECT_SLOTS;
    l.block_count = (uint32_t)((size_t)d->buffer_pool_size / VRS_BLOCK_SIZE);
    l.assembly_size = vrs__size_max((size_t)d->max_message_size, vrs__size_add((size_t)d->max_request_size, 1, fits));
    l.conns = vrs__place(&at, l.slot_count, sizeof(vrs__conn), 64, fits);
    l.free_slots = vrs__place(&at, l.slot_count, sizeof(uint32_t), 64, fits);
    l.active = vrs__place(&at, l.slot_count, sizeof(uint32_t), 64, fits);
    l.pollfds = vrs__place(&at, (size_t)l.slot_count + VRS__POLL_FIRST_CONN, sizeof(vrs_pollfd), 64, fits);
    l.pool_next = vrs__place(&at, l.block_count, sizeof(uint32_t), 64, fits);
    /* Phoenix: channel and room tables, and the buffers that build outgoing messages. The
       relay's largest event is peerAccepted, listing every peer with its metadata; a JSON
       string holding an event is at most twice its size (only " and \\ are escaped). */
    l.bucket_count = 1;
    while (l.bucket_count < (uint32_t)d->max_rooms * 2u) l.bucket_count *= 2;
    if (d->disable_phoenix) {
        l.relay_decoded_size = l.relay_inner_size = l.relay_outer_size = 0;
    } else {
        size_t peer = vrs__size_add((size_t)d->max_metadata_size, 80, fits);
        size_t listing = vrs__size_add(vrs__size_mul((size_t)d->max_peers_per_room, peer, fits), 256, fits);
        l.relay_decoded_size = (size_t)d->max_message_size;
        l.relay_inner_size = vrs__size_max(vrs__size_add((size_t)d->max_message_size, 256, fits), listing);
        l.relay_outer_size = vrs__size_add(vrs__size_mul(2, l.relay_inner_size, fits), 16 + VRS__PUSH_HEAD_ROOM + 2, fits);
    }
    l.channels = vrs__place(&at, (size_t)d->max_channels, sizeof(vrs__channel), 64, fits);
    l.free_channels = vrs__place(&at, (size_t)d->max_channels, sizeof(uint32_t), 64, fits);
    l.rooms = vrs__place(&at, (size_t)d->max_rooms, sizeof(vrs__room), 64, fits);
    l.free_rooms = vrs__place(&at, (size_t)d->max_rooms, sizeof(uint32_t), 64, fits);
    l.room_buckets = vrs__place(&at, l.bucket_count, sizeof(uint32_t), 64, fits);
    l.room_ids = vrs__place(&at, (size_t)d->max_rooms, (size_t)d->max_room_id_size + 1, 64, fits);
    l.relay_inner = vrs__place(&at, l.relay_inner_size, 1, 64, fits);
    l.relay_outer = vrs__place(&at, l.relay_outer_size, 1, 64, fits);
    l.relay_decoded = vrs__place(&at, l.relay_decoded_size, 1, 64, fits);
    l.read_buffer = vrs__place(&at, VRS__READ_BUFFER_SIZE, 1, 64, fits);
    l.assembly = vrs__place(&at, l.assembly_size, 1, 64, fits);
    l.pool_data = vrs__place(&at, l.block_count, VRS_BLOCK_SIZE, 4096, fits);
    l.total = vrs__size_add(at, 4096, fits); /* room to align the block's start to a page */
    return l;
}

/* The plan for a valid description, or 0 with a log line when it does not fit size_t. */
static size_t vrs__planned_size(const vrs_desc *d, vrs__layout *l) {
    *l = vrs__plan(d);
    if (!l->fits) {
        char detail[160];
        snprintf(detail, sizeof detail,
                 "max_message_size %d, max_peers_per_room %d, max_metadata_size %d, max_connections %d",
                 d->max_message_size, d->max_peers_per_room, d->max_metadata_size, d->max_connections);
        vrs__log_to(&d->logger, VRS_LOG_MEMORY_PLAN_TOO_LARGE, detail);
        return 0;
    }
    return l->total;
}

VRS_API size_t vrs_memory_size(const vrs_desc *desc) {
    vrs_desc d = vrs__resolve_defaults(desc);
    vrs__layout l;
    return vrs__desc_is_valid(&d) ? vrs__planned_size(&d, &l) : 0;
}

static void *vrs__default_alloc(size_t size, void *user_data) {
    (void)user_data;
    return VRS_MALLOC(size);
}

static void vrs__default_free(void *pointer, void *user_data) {
    (void)user_data;
    VRS_FREE(pointer);
}

static int vrs__listen(vrs_server *server) {
    struct addrinfo hints, *found = NULL, *ai;
    char port_text[16], reason[128] = "";
    vrs__socket fd = VRS__NO_SOCKET;
    int error;
    VRS_MEMSET(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port_text, sizeof port_text, "%d", server->desc.port == VRS_PORT_ANY ? 0 : server->desc.port);
    error = getaddrinfo(server->desc.host, port_text, &hints, &found);
    if (error != 0) {
        vrs__log(server, VRS_LOG_LISTEN_FAILED, gai_strerror(error));
        return 0;
    }
    for (ai = found; ai; ai = ai->ai_next) {
        int zero = 0;
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd == VRS__NO_SOCKET) {
            vrs__last_error_text(reason, sizeof reason);
            continue;
        }
        vrs__listener_prepare(fd);
        if (ai->ai_family == AF_INET6) /* "::" serves IPv4 too */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, VRS__CAST(const char *, (const void *)&zero), sizeof zero);
        if (bind(fd, ai->ai_addr, (int)ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) break;
        vrs__last_error_text(reason, sizeof reason);
        vrs__socket_close(fd);
        fd = VRS__NO_SOCKET;
    }
    freeaddrinfo(found);
    if (fd == VRS__NO_SOCKET) {
        char detail[300];
        snprintf(detail, sizeof detail, "%s port %s: %s", server->desc.host, port_text, reason);
        vrs__log(server, VRS_LOG_LISTEN_FAILED, detail);
        return 0;
    }
    vrs__socket_prepare(fd);
    {
        struct sockaddr_storage bound;
        socklen_t length = sizeof bound;
        char detail[64];
        getsockname(fd, VRS__CAST(struct sockaddr *, (void *)&bound), &length);
        vrs__format_address(&bound, detail);
        server->port = bound.ss_family == AF_INET6
                           ? ntohs(VRS__CAST(struct sockaddr_in6 *, (void *)&bound)->sin6_port)
                           : ntohs(VRS__CAST(struct sockaddr_in *, (void *)&bound)->sin_port);
        vrs__log(server, VRS_LOG_LISTENING, detail);
    }
    server->listen_fd = fd;
    return 1;
}

#ifdef VRS_USE_EPOLL
#define VRS__LISTENER_TAG 0xFFFFFFFFu

/* The listener leaves the epoll set while accepting is paused (out of descriptors, or no slot
   to take a client), so that its readiness does not wake every step. */
static void vrs__watch_listener(vrs_server *server) {
    int want = vrs__can_accept(server);
    if (want != server->listener_watched) {
        struct epoll_event event;
        VRS_MEMSET(&event, 0, sizeof event);
        event.events = EPOLLIN;
        event.data.u32 = VRS__LISTENER_TAG;
        if (epoll_ctl(server->epoll_fd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, server->listen_fd, &event) == 0)
            server->listener_watched = want;
    }
}
#endif

VRS_API vrs_result vrs_create(const vrs_desc *desc, vrs_server **out_server) {
    vrs_desc d;
    vrs__layout l;
    uint8_t *base;
    vrs_server *server;
    uint32_t i;
    int owns = 0;
    char why[160];
    if (!out_server || !desc) {
        vrs__log_to(desc ? &desc->logger : NULL, VRS_LOG_INVALID_DESCRIPTION,
                    desc ? "the server pointer is NULL" : "the description is NULL");
        if (out_server) *out_server = NULL;
        return VRS_ERROR_INVALID_ARGUMENT;
    }
    *out_server = NULL;
    d = vrs__resolve_defaults(desc);
    if (!vrs__desc_check(&d, why, sizeof why)) {
        vrs__log_to(&d.logger, VRS_LOG_INVALID_DESCRIPTION, why);
        return VRS_ERROR_INVALID_ARGUMENT;
    }
    if (vrs__planned_size(&d, &l) == 0) return VRS_ERROR_INVALID_ARGUMENT; /* logged there */
    if (d.memory) {
        if (d.memory_size < l.total) {
            snprintf(why, sizeof why, "desc.memory_size = %lu bytes, vrs_memory_size = %lu",
                     (unsigned long)d.memory_size, (unsigned long)l.total);
            vrs__log_to(&d.logger, VRS_LOG_OUT_OF_MEMORY, why);
            return VRS_ERROR_OUT_OF_MEMORY;
        }
        base = VRS__CAST(uint8_t *, d.memory);
    } else {
        if (!d.allocator.alloc) {
            d.allocator.alloc = vrs__default_alloc;
            d.allocator.free = vrs__default_free;
        }
        base = VRS__CAST(uint8_t *, d.allocator.alloc(l.total, d.allocator.user_data));
        /* cppcheck-suppress memleak ; nothing was allocated when base is NULL */
        if (!base) {
            snprintf(why, sizeof why, "the allocator did not give %lu bytes", (unsigned long)l.total);
            vrs__log_to(&d.logger, VRS_LOG_OUT_OF_MEMORY, why);
            return VRS_ERROR_OUT_OF_MEMORY;
        }
        owns = 1;
    }
    /* The block pool is left untouched: the system maps its pages only when blocks are used. */
    {
        uintptr_t start = (uintptr_t)base, aligned = (start + 63) & ~(uintptr_t)63;
        uint8_t *b = base + (aligned - start);
        server = VRS__CAST(vrs_server *, (void *)b);
        VRS_MEMSET(server, 0, sizeof *server);
        server->memory = base;
        server->conns = VRS__CAST(vrs__conn *, (void *)(b + l.conns));
        server->free_slots = VRS__CAST(uint32_t *, (void *)(b + l.free_slots));
        server->active = VRS__CAST(uint32_t *, (void *)(b + l.active));
        server->pollfds = VRS__CAST(vrs_pollfd *, (void *)(b + l.pollfds));
        server->pool.next = VRS__CAST(uint32_t *, (void *)(b + l.pool_next));
        server->read_buffer = b + l.read_buffer;
        server->assembly = b + l.assembly;
        server->pool.data = b + l.pool_data;
        server->channels = VRS__CAST(vrs__channel *, (void *)(b + l.channels));
        server->free_channels = VRS__CAST(uint32_t *, (void *)(b + l.free_channels));
        server->rooms = VRS__CAST(vrs__room *, (void *)(b + l.rooms));
        server->free_rooms = VRS__CAST(uint32_t *, (void *)(b + l.free_rooms));
        server->room_buckets = VRS__CAST(uint32_t *, (void *)(b + l.room_buckets));
        server->room_ids = VRS__CAST(char *, (void *)(b + l.room_ids));
        server->relay_inner = VRS__CAST(char *, (void *)(b + l.relay_inner));
        server->relay_outer = VRS__CAST(char *, (void *)(b + l.relay_outer));
        server->relay_decoded = VRS__CAST(char *, (void *)(b + l.relay_decoded));
    }
    server->relay_inner_size = l.relay_inner_size;
    server->relay_outer_size = l.relay_outer_size;
    server->relay_decoded_size = l.relay_decoded_size;
    for (i = 0; i < (uint32_t)d.max_channels; i++) {
        VRS_MEMSET(&server->channels[i], 0, sizeof(vrs__channel));
        server->free_channels[i] = (uint32_t)d.max_channels - 1 - i;
    }
    server->free_channel_count = (uint32_t)d.max_channels;
    for (i = 0; i < (uint32_t)d.max_rooms; i++) {
        VRS_MEMSET(&server->rooms[i], 0, sizeof(vrs__room));
        server->free_rooms[i] = (uint32_t)d.max_rooms - 1 - i;
    }
    server->free_room_count = (uint32_t)d.max_rooms;
    for (i = 0; i < l.bucket_count; i++) server->room_buckets[i] = VRS__NONE;
    server->room_bucket_mask = l.bucket_count - 1;
    server->random_fd = -1;
    server->wake_fds[0] = server->wake_fds[1] = VRS__NO_SOCKET;
#ifdef VRS_USE_EPOLL
    server->epoll_fd = -1;
#endif
    server->desc = d;
    server->queue_limit = vrs__queue_limit(&d);
    server->owns_memory = owns;
    server->listen_fd = VRS__NO_SOCKET;
    server->slot_count = l.slot_count;
    server->assembly_size = l.assembly_size;
    for (i = 0; i < l.slot_count; i++) {
        VRS_MEMSET(&server->conns[i], 0, sizeof(vrs__conn));
        server->conns[i].fd = VRS__NO_SOCKET;
        server->free_slots[i] = l.slot_count - 1 - i; /* slot 0 is handed out first */
    }
    server->free_slot_count = l.slot_count;
    server->pool.block_count = l.block_count;
    server->pool.free_count = l.block_count;
    server->pool.free_head = l.block_count ? 0 : VRS__NONE;
    for (i = 0; i < l.block_count; i++) server->pool.next[i] = i + 1 < l.block_count ? i + 1 : VRS__NONE;
    server->dirty_head = VRS__NONE;
    server->attention_head = VRS__NONE;
    server->ready_head = VRS__NONE;
    server->pool_waiters = VRS__NONE;
    server->next_timer_ms = INT64_MAX;
    server->now_ms = vrs__clock_ms();
    {
        const char *failure = NULL;
        vrs_result result = VRS_ERROR_SYSTEM;
        /* cppcheck-suppress knownConditionTrueFalse ; Winsock's start can fail, POSIX has none */
        if (!vrs__platform_start()) {
            vrs__log(server, VRS_LOG_SYSTEM_ERROR, "the socket library did not start");
            if (owns) d.allocator.free(base, d.allocator.user_data);
            return VRS_ERROR_SYSTEM;
        }
        if (!d.disable_phoenix) {
            server->random_fd = vrs__random_open();
            if (server->random_fd < 0) failure = "cannot open " VRS__RANDOM_SOURCE " for peer ids";
        }
        if (!failure && !vrs__wake_open(server)) failure = "cannot make the wake-up descriptor";
#ifdef VRS_USE_EPOLL
        if (!failure) {
            struct epoll_event event;
            VRS_MEMSET(&event, 0, sizeof event);
            event.events = EPOLLIN;
            event.data.u32 = VRS__WAKE_TAG;
            server->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
            if (server->epoll_fd < 0) failure = "epoll_create1 failed";
            else if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, server->wake_fds[0], &event) != 0)
                failure = "epoll_ctl: cannot watch the wake-up descriptor";
        }
#endif
        if (failure) vrs__log(server, VRS_LOG_SYSTEM_ERROR, failure);
        else if (!vrs__listen(server)) result = VRS_ERROR_ADDRESS;
        else result = VRS_OK;
        if (result != VRS_OK) {
            vrs__close_descriptors(server);
            vrs__platform_stop();
            if (owns) d.allocator.free(base, d.allocator.user_data);
            return result;
        }
    }
#ifdef VRS_USE_EPOLL
    /* in the epoll set from the start: a host's own loop polls the epoll descriptor before it
       ever calls vrs_process, and must wake when a client connects */
    vrs__watch_listener(server);
#endif
    *out_server = server;
    return VRS_OK;
}

VRS_API void vrs_destroy(vrs_server *server) {
    uint32_t i;
    if (!server) return;
    server->now_ms = vrs__clock_ms();
    for (i = 0; i < server->active_count; i++) {
        vrs__conn *conn = &server->conns[server->active[i]];
        if (conn->state == VRS__OPEN) {
            vrs__send_close(server, conn, VRS__CLOSE_GOING_AWAY, "server shutting down", 20);
            vrs__finish(server, conn, VRS__CLOSE_GOING_AWAY);
        } else if (conn->state == VRS__CLOSING) {
            vrs__finish(server, conn, conn->close_code);
        }
        vrs__flush(server, conn); /* the one attempt: a dead connection is never flushed */
        vrs__kill(server, conn, VRS__CLOSE_GOING_AWAY);
    }
    vrs__attend(server);
    vrs__close_descriptors(server);
    vrs__platform_stop();
    if (server->owns_memory) server->desc.allocator.free(server->memory, server->desc.allocator.user_data);
}

/* ---------------------------------------------------------------------------------------------
   The step
   ------------------------------------------------------------------------------------------- */

VRS_API int vrs_timeout_ms(vrs_server *server) {
    int64_t now = vrs__clock_ms(), wait;
    if (server->ready_head != VRS__NONE) return 0; /* resumed connections hold bytes to parse */
    if (server->accept_paused_until_ms > now && server->next_timer_ms > server->accept_paused_until_ms)
        wait = server->accept_paused_until_ms - now;
    else
        wait = server->next_timer_ms - now;
    if (wait < 0) return 0;
    return wait > 0x7FFFFFFF ? -1 : (int)wait;
}

/* What every step ends with, whatever woke it. The wake-up is drained before on_wake runs, so
   that a wake arriving while the host empties its queue makes the next step run. */
static void vrs__finish_step(vrs_server *server, int listener_ready, int wake_ready) {
    if (listener_ready) vrs__accept(server);
    if (wake_ready) {
        vrs__wake_drain(server);
        if (server->desc.on_wake) server->desc.on_wake(server, server->desc.user_data);
    }
    vrs__run_timers(server);
    vrs__attend(server);
}

#ifdef VRS_USE_EPOLL

/* One round over the connections epoll reports ready: the cost follows the traffic, not the
   number of connections. */
static vrs_result vrs__epoll_step(vrs_server *server, int wait) {
    int ready, i, listener_ready = 0, wake_ready = 0;
    server->now_ms = vrs__clock_ms();
    vrs__watch_listener(server);
    ready = epoll_wait(server->epoll_fd, server->ready, (int)(sizeof server->ready / sizeof server->ready[0]), wait);
    if (ready < 0) {
        if (errno == EINTR) return VRS_OK;
        vrs__log(server, VRS_LOG_SYSTEM_ERROR, strerror(errno));
        return VRS_ERROR_SYSTEM;
    }
    server->now_ms = vrs__clock_ms();
    for (i = 0; i < ready; i++) {
        uint32_t slot = server->ready[i].data.u32, events = server->ready[i].events;
        vrs__conn *conn;
        if (slot == VRS__LISTENER_TAG) {
            listener_ready = 1;
            continue;
        }
        if (slot == VRS__WAKE_TAG) {
            wake_ready = 1;
            continue;
        }
        /* nothing is released before vrs__attend, so the slot is the one epoll reported */
        conn = &server->conns[slot];
        if (conn->state == VRS__FREE || conn->dead) continue;
        if (events & EPOLLOUT) vrs__flush(server, conn);
        if (events & (EPOLLHUP | EPOLLERR)) vrs__resume(server, conn); /* reported even while paused */
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) vrs__read(server, conn);
    }
    vrs__finish_step(server, listener_ready, wake_ready);
    return VRS_OK;
}

VRS_API int vrs_poll_fds(vrs_server *server, vrs_pollfd *fds, int capacity) {
    if (capacity < 1) return 0;
    server->now_ms = vrs__clock_ms();
    vrs__watch_listener(server); /* back in the set when a pause of accepting has ended */
    fds[0].fd = server->epoll_fd;
    fds[0].events = POLLIN;
    fds[0].revents = 0;
    return 1;
}

VRS_API void vrs_process(vrs_server *server, const vrs_pollfd *fds, int count) {
    (void)fds;
    (void)count;
    vrs__epoll_step(server, 0);
}

VRS_API vrs_result vrs_step(vrs_server *server, int timeout_ms) {
    int wait;
    if (!server) return VRS_ERROR_INVALID_ARGUMENT;
    wait = vrs_timeout_ms(server);
    if (timeout_ms >= 0 && (wait < 0 || timeout_ms < wait)) wait = timeout_ms;
    return vrs__epoll_step(server, wait);
}

#else /* poll() */

VRS_API int vrs_poll_fds(vrs_server *server, vrs_pollfd *fds, int capacity) {
    uint32_t i;
    int count = 0;
    if (capacity < 1) return 0;
    server->now_ms = vrs__clock_ms();
    fds[0].fd = vrs__can_accept(server) ? server->listen_fd : VRS__NO_SOCKET;
    fds[0].events = POLLIN;
    fds[0].revents = 0;
    count = 1;
    if (capacity > 1) {
        fds[1].fd = server->wake_fds[0];
        fds[1].events = POLLIN;
        fds[1].revents = 0;
        count = VRS__POLL_FIRST_CONN;
    }
    for (i = 0; i < server->active_count && count < capacity; i++) {
        vrs__conn *conn = &server->conns[server->active[i]];
        fds[count].fd = conn->fd;
        fds[count].events = (short)((conn->paused ? 0 : POLLIN) | (conn->want_write ? POLLOUT : 0));
        fds[count].revents = 0;
        count++;
    }
    return count;
}

VRS_API void vrs_process(vrs_server *server, const vrs_pollfd *fds, int count) {
    int i;
    server->now_ms = vrs__clock_ms();
    /* Positions match the active list as vrs_poll_fds wrote it: nothing is released until
       vrs__attend, and new connections are appended past `count`. */
    for (i = VRS__POLL_FIRST_CONN; i < count; i++) {
        vrs__conn *conn;
        if (!fds[i].revents || (uint32_t)(i - VRS__POLL_FIRST_CONN) >= server->active_count) continue;
        conn = &server->conns[server->active[i - VRS__POLL_FIRST_CONN]];
        if (conn->fd != fds[i].fd || conn->dead) continue;
        if (fds[i].revents & POLLOUT) vrs__flush(server, conn);
        if (fds[i].revents & (POLLHUP | POLLERR)) vrs__resume(server, conn); /* reported even while paused */
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) vrs__read(server, conn);
    }
    vrs__finish_step(server, count > 0 && fds[0].fd == server->listen_fd && (fds[0].revents & POLLIN),
                     count > 1 && fds[1].fd == server->wake_fds[0] && (fds[1].revents & POLLIN));
}

VRS_API vrs_result vrs_step(vrs_server *server, int timeout_ms) {
    int count, wait, ready;
    if (!server) return VRS_ERROR_INVALID_ARGUMENT;
    count = vrs_poll_fds(server, server->pollfds, (int)server->slot_count + VRS__POLL_FIRST_CONN);
    wait = vrs_timeout_ms(server);
    if (timeout_ms >= 0 && (wait < 0 || timeout_ms < wait)) wait = timeout_ms;
    ready = vrs__poll(server->pollfds, count, wait);
    if (ready < 0) {
        char text[128];
        if (vrs__last_io_error() == VRS__IO_RETRY) return VRS_OK;
        vrs__log(server, VRS_LOG_SYSTEM_ERROR, vrs__last_error_text(text, sizeof text));
        return VRS_ERROR_SYSTEM;
    }
    vrs_process(server, server->pollfds, count);
    return VRS_OK;
}

#endif

/* ---------------------------------------------------------------------------------------------
   Sending, closing, answering, asking
   ------------------------------------------------------------------------------------------- */

VRS_API vrs_result vrs_send(vrs_server *server, vrs_conn handle, vrs_message_type type,
                            const void *data, size_t length) {
    vrs__conn *conn = vrs__lookup(server, handle);
    if (!conn) return VRS_ERROR_INVALID_CONNECTION;
    if (type != VRS_MESSAGE_TEXT && type != VRS_MESSAGE_BINARY) return VRS_ERROR_INVALID_ARGUMENT;
    return vrs__queue_frame(server, conn, (int)type, data, length);
}

VRS_API vrs_result vrs_send_text(vrs_server *server, vrs_conn conn, const char *text, size_t length) {
    return vrs_send(server, conn, VRS_MESSAGE_TEXT, text, length);
}

VRS_API vrs_result vrs_send_binary(vrs_server *server, vrs_conn conn, const void *data, size_t length) {
    return vrs_send(server, conn, VRS_MESSAGE_BINARY, data, length);
}

VRS_API vrs_result vrs_send_ping(vrs_server *server, vrs_conn handle, const void *data, size_t length) {
    vrs__conn *conn = vrs__lookup(server, handle);
    if (!conn) return VRS_ERROR_INVALID_CONNECTION;
    if (length > 125) return VRS_ERROR_TOO_LARGE;
    return vrs__queue_frame(server, conn, VRS__OP_PING, data, length);
}

VRS_API vrs_result vrs_close(vrs_server *server, vrs_conn handle, int code, const char *reason) {
    vrs__conn *conn = vrs__lookup(server, handle);
    if (!conn) return VRS_ERROR_INVALID_CONNECTION;
    if (conn->state != VRS__OPEN) return VRS_ERROR_NOT_OPEN;
    if (!vrs__close_code_is_valid(code) || (reason && strlen(reason) > 123))
        return VRS_ERROR_INVALID_ARGUMENT;
    vrs__start_close(server, conn, code, reason);
    return VRS_OK;
}

VRS_API vrs_result vrs_http_respond(vrs_server *server, vrs_conn handle, int status,
                                    const char *content_type, const char *extra_headers,
                                    const void *body, size_t length) {
    vrs__conn *conn = vrs__lookup(server, handle);
    if (!conn) return VRS_ERROR_INVALID_CONNECTION;
    if (conn->state != VRS__READING_REQUEST) return VRS_ERROR_NOT_OPEN;
    if (status < 100 || status > 999) return VRS_ERROR_INVALID_ARGUMENT;
    if ((size_t)server->desc.send_queue_size < VRS__RESPONSE_HEAD_SIZE ||
        length > (size_t)server->desc.send_queue_size - VRS__RESPONSE_HEAD_SIZE)
        return VRS_ERROR_TOO_LARGE;
    if (vrs__chain_blocks_needed(&conn->outbound, length + VRS__RESPONSE_HEAD_SIZE) > server->pool.free_count)
        return VRS_ERROR_POOL_EXHAUSTED;
    return vrs__respond(server, conn, status, content_type ? content_type : "application/octet-stream",
                        extra_headers, body, length, !conn->head_request)
               ? VRS_OK
               : VRS_ERROR_TOO_LARGE;
}

VRS_API void *vrs_conn_user_data(vrs_server *server, vrs_conn handle) {
    vrs__conn *conn = vrs__lookup(server, handle);
    return conn ? conn->user_data : NULL;
}

VRS_API vrs_result vrs_conn_set_user_data(vrs_server *server, vrs_conn handle, void *user_data) {
    vrs__conn *conn = vrs__lookup(server, handle);
    if (!conn) return VRS_ERROR_INVALID_CONNECTION;
    conn->user_data = user_data;
    return VRS_OK;
}

VRS_API const char *vrs_conn_remote_address(vrs_server *server, vrs_conn handle) {
    vrs__conn *conn = vrs__lookup(server, handle);
    return conn ? conn->remote_address : "";
}

VRS_API int vrs_conn_is_open(vrs_server *server, vrs_conn handle) {
    vrs__conn *conn = vrs__lookup(server, handle);
    return conn && conn->state == VRS__OPEN && !conn->dead;
}

VRS_API int vrs_port(const vrs_server *server) { return server->port; }

VRS_API vrs_stats vrs_get_stats(const vrs_server *server) {
    vrs_stats stats;
    uint32_t i;
    VRS_MEMSET(&stats, 0, sizeof stats);
    stats.connections = (int)server->active_count;
    stats.open_connections = server->websocket_count;
    stats.pool_blocks_total = (int)server->pool.block_count;
    stats.pool_blocks_used = (int)(server->pool.block_count - server->pool.free_count);
    stats.messages_received = server->messages_received;
    stats.messages_sent = server->messages_sent;
    /* the gauges that no step needs are counted here, once per call */
    for (i = 0; i < server->active_count; i++) {
        const vrs__conn *conn = &server->conns[server->active[i]];
        if (conn->phoenix && conn->announced) stats.phoenix_sockets++;
    }
    for (i = 0; i < (uint32_t)server->desc.max_channels; i++)
        if (server->channels[i].in_use && server->channels[i].relay_joined) stats.relay_peers++;
    stats.channels = server->channel_count;
    stats.rooms = server->room_count;
    stats.draining = server->draining;
    stats.connections_accepted = server->connections_accepted;
    stats.connections_refused =
        server->log_counts[VRS_LOG_CONNECTIONS_FULL] + server->log_counts[VRS_LOG_DRAINING_REFUSED];
    stats.bytes_received = server->bytes_received;
    stats.bytes_sent = server->bytes_sent;
    stats.slow_consumers_closed =
        server->log_counts[VRS_LOG_SLOW_CONSUMER] + server->log_counts[VRS_LOG_POOL_EXHAUSTED];
    VRS_MEMCPY(stats.closes_by_code, server->closes_by_code, sizeof stats.closes_by_code);
    stats.closes_other_code = server->closes_other_code;
    VRS_MEMCPY(stats.log_counts, server->log_counts, sizeof stats.log_counts);
    VRS_MEMCPY(stats.join_failures, server->join_failures, sizeof stats.join_failures);
    return stats;
}

VRS_API void vrs_drain(vrs_server *server) {
    if (server) server->draining = 1;
}

VRS_API vrs_result vrs_close_all(vrs_server *server, int code, const char *reason) {
    uint32_t i;
    if (!server) return VRS_ERROR_INVALID_ARGUMENT;
    if (!vrs__close_code_is_valid(code) || (reason && strlen(reason) > 123)) return VRS_ERROR_INVALID_ARGUMENT;
    server->now_ms = vrs__clock_ms();
    for (i = 0; i < server->active_count; i++) {
        vrs__conn *conn = &server->conns[server->active[i]];
        if (conn->state == VRS__OPEN && !conn->dead) vrs__start_close(server, conn, code, reason);
    }
    vrs__flush_dirty(server); /* the close frames go now, not after the next wait */
    return VRS_OK;
}

#endif /* VRS__IMPLEMENTED */
#endif /* VRS_IMPLEMENTATION */

/*
------------------------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 The videoroom_signal authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------------------------
*/
