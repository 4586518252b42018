/* A program built against the header as a user gets it (CMake target or pkg-config): it starts
   a server on a port the system picks and checks that it answers, 404 to a plain request and
   101 to the Phoenix socket's WebSocket upgrade. */
#define VRS_IMPLEMENTATION
#include <videoroom_signal.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sends the request and steps the server until the status line is back: its code, or -1. */
static int status_of(vrs_server *server, const char *request) {
    struct sockaddr_in address;
    char answer[512] = "";
    size_t got = 0;
    int client = socket(AF_INET, SOCK_STREAM, 0), status = -1, round;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)vrs_port(server));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (client >= 0 && connect(client, (struct sockaddr *)&address, sizeof address) == 0 &&
        send(client, request, strlen(request), 0) == (ssize_t)strlen(request)) {
        for (round = 0; round < 500 && !strstr(answer, "\r\n"); round++) {
            ssize_t n;
            vrs_step(server, 10);
            n = recv(client, answer + got, sizeof answer - 1 - got, MSG_DONTWAIT);
            if (n > 0) answer[got += (size_t)n] = '\0';
        }
        if (sscanf(answer, "HTTP/1.1 %d", &status) != 1) status = -1;
    }
    if (client >= 0) close(client);
    return status;
}

int main(void) {
    vrs_desc desc = {0};
    vrs_server *server = NULL;
    int not_found, upgraded;
    desc.port = VRS_PORT_ANY;
    if (vrs_create(&desc, &server) != VRS_OK) return 1;
    not_found = status_of(server, "GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n");
    upgraded = status_of(server, "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\n"
                                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    printf("server on port %d: a plain request got %d, the socket's upgrade %d\n", vrs_port(server),
           not_found, upgraded);
    vrs_destroy(server);
    return not_found == 404 && upgraded == 101 ? 0 : 1;
}
