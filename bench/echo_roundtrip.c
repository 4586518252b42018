/* echo_roundtrip: round trips per second and MB/s against a WebSocket echo server.

   build/echo_roundtrip --port N [--host 127.0.0.1] [--size BYTES] [--seconds S] [--window W]

   One connection; W masked binary messages of BYTES in flight (1: strict ping-pong). Counts
   whole echoes received and checks each one's bytes. A quick measure, not the benchmark. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int send_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, 0);
        if (w <= 0) return 0;
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

static int recv_all(int fd, uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) return 0;
        p += r;
        n -= (size_t)r;
    }
    return 1;
}

/* A masked client frame (mask 0: the payload goes out as it is, the header still says masked). */
static size_t client_frame(uint8_t *out, const uint8_t *payload, size_t length) {
    size_t h = 0;
    out[h++] = 0x82;
    if (length < 126) {
        out[h++] = (uint8_t)(0x80 | length);
    } else if (length <= 0xFFFF) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(length >> 8);
        out[h++] = (uint8_t)length;
    } else {
        int i;
        out[h++] = 0x80 | 127;
        for (i = 7; i >= 0; i--) out[h++] = (uint8_t)((uint64_t)length >> (8 * i));
    }
    memset(out + h, 0, 4);
    h += 4;
    memcpy(out + h, payload, length);
    return h + length;
}

static int read_echo(int fd, uint8_t *payload, size_t expected) {
    uint8_t head[10];
    size_t length;
    if (!recv_all(fd, head, 2)) return 0;
    length = head[1] & 0x7F;
    if (length == 126) {
        if (!recv_all(fd, head + 2, 2)) return 0;
        length = (size_t)head[2] << 8 | head[3];
    } else if (length == 127) {
        int i;
        if (!recv_all(fd, head + 2, 8)) return 0;
        for (length = 0, i = 2; i < 10; i++) length = length << 8 | head[i];
    }
    return length == expected && recv_all(fd, payload, length);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 9001, window = 1, i, one = 1, fd;
    size_t size = 64, frame_length;
    double duration = 3, start, elapsed;
    long round_trips = 0;
    uint8_t *payload, *frame, *echo;
    struct sockaddr_in address;
    char request[512], response[1024];
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--host") == 0) host = argv[i + 1];
        else if (strcmp(argv[i], "--size") == 0) size = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0) duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0) window = atoi(argv[i + 1]);
    }
    payload = malloc(size);
    frame = malloc(size + 14);
    echo = malloc(size);
    for (i = 0; (size_t)i < size; i++) payload[i] = (uint8_t)(i * 31 + 7);
    frame_length = client_frame(frame, payload, size);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &address.sin_addr);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("connect");
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    snprintf(request, sizeof request,
             "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             host, port);
    send_all(fd, (const uint8_t *)request, strlen(request));
    {
        size_t got = 0;
        while (got < sizeof response - 1) {
            ssize_t r = recv(fd, response + got, 1, 0);
            if (r <= 0) return 1;
            got++;
            if (got >= 4 && memcmp(response + got - 4, "\r\n\r\n", 4) == 0) break;
        }
        if (strncmp(response, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "no upgrade\n");
            return 1;
        }
    }
    for (i = 0; i < window; i++) send_all(fd, frame, frame_length);
    start = seconds_now();
    while ((elapsed = seconds_now() - start) < duration) {
        if (!read_echo(fd, echo, size) || memcmp(echo, payload, size) != 0) {
            fprintf(stderr, "bad echo\n");
            return 1;
        }
        round_trips++;
        send_all(fd, frame, frame_length);
    }
    printf("size %zu bytes, window %d: %.0f round trips/s, %.1f MB/s echoed (%.2f s)\n", size, window,
           round_trips / elapsed, round_trips * (double)size / elapsed / 1e6, elapsed);
    close(fd);
    return 0;
}
