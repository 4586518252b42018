/* web_files.h: the demo page's folder, served through the library's HTTP hook, for the example
   servers (include it after videoroom_signal.h, in one file).

   Only plain names below the web root are served: no "..", dot files, percent-encoding or
   directory listings; every path segment is opened without following a symbolic link (on
   Windows: no symbolic link, junction or other reparse point, and only files on disk); the
   page runs under a strict Content-Security-Policy. web_find_root(argv[0]) finds examples/web
   from where the server was started or beside the binary; set web_root to serve another
   folder. */
#ifndef WEB_FILES_H
#define WEB_FILES_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _WIN32
#include <io.h>
#include <wchar.h>
#include <windows.h>
#else
#include <unistd.h>
#endif

#define WEB_MAX_FILE (192 * 1024)

static const char *web_root = "examples/web";
static char web_file_buffer[WEB_MAX_FILE];

/* Only what the page needs, and nothing that lets a file run as something else. */
static const char web_security_headers[] =
    "Cache-Control: no-cache\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; "
    "media-src 'self' blob: mediastream:; img-src 'self' data:; style-src 'self'\r\n";

static const char *content_type_of(const char *name) {
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".ico", "image/x-icon"},              {".txt", "text/plain; charset=utf-8"}};
    const char *dot = strrchr(name, '.');
    size_t i;
    for (i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0) return types[i][1];
    return NULL;
}

/* A request path names a file only when every segment is plain: letters, digits, '-', '_' and
   inner dots, so "..", dot files, percent-encoding, backslashes and empty segments never reach
   the file system. */
static int is_plain_path(const char *path, size_t length) {
    size_t i, segment_start = 1;
    if (length < 2 || path[0] != '/') return 0;
    for (i = 1; i <= length; i++) {
        char c = i < length ? path[i] : '/';
        if (c == '/') {
            if (i == segment_start || path[segment_start] == '.' || path[i - 1] == '.') return 0;
            segment_start = i + 1;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

#ifdef _WIN32
/* The file's own path as the system resolved it (links, junctions and mount points followed),
   in `out`; 0 when unknown. */
static int web_final_path(HANDLE file, wchar_t *out, DWORD capacity) {
    DWORD n = GetFinalPathNameByHandleW(file, out, capacity, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    return n > 0 && n < capacity;
}

/* Opens a file below the web root, refusing a link at any depth: the file is opened without
   following a reparse point at its last segment, must be a plain file on disk, and the path
   the system resolved for it must be the web root's own, followed by the request's segments,
   so that no segment on the way was a symbolic link, junction or mount point. Returns a C
   runtime descriptor, or -1. */
static int open_below_web_root(const char *path, size_t length) {
    enum { CAPACITY = 600 };
    wchar_t wide[CAPACITY], root_path[CAPACITY], file_path[CAPACITY];
    BY_HANDLE_FILE_INFORMATION info;
    HANDLE root, file;
    size_t at, end;
    int ok;
    if (MultiByteToWideChar(CP_UTF8, 0, web_root, -1, wide, CAPACITY) == 0) return -1;
    root = CreateFileW(wide, 0, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                       FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (root == INVALID_HANDLE_VALUE) return -1;
    ok = web_final_path(root, root_path, CAPACITY);
    CloseHandle(root);
    if (!ok || wcslen(root_path) + length + 1 >= CAPACITY) return -1;
    /* the root's resolved path, then the request's segments (plain ASCII: is_plain_path) */
    at = wcslen(root_path);
    wcscpy(wide, root_path);
    for (end = 0; end < length; end++) wide[at + end] = path[end] == '/' ? L'\\' : (wchar_t)path[end];
    wide[at + length] = L'\0';
    file = CreateFileW(wide, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (file == INVALID_HANDLE_VALUE) return -1;
    ok = GetFileType(file) == FILE_TYPE_DISK && GetFileInformationByHandle(file, &info) &&
         !(info.dwFileAttributes & (FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY)) &&
         web_final_path(file, file_path, CAPACITY) && _wcsicmp(file_path, wide) == 0;
    if (ok) {
        int fd = _open_osfhandle((intptr_t)file, _O_RDONLY | _O_BINARY);
        if (fd >= 0) return fd;
    }
    CloseHandle(file);
    return -1;
}
#else
/* Opens a file below the web root one path segment at a time, refusing a symbolic link at
   any depth: O_NOFOLLOW on the whole path would only guard its last segment. O_NONBLOCK
   because opening a FIFO (or a device) would otherwise wait, and the whole server with it,
   before fstat could refuse what is not a regular file. Returns the descriptor, or -1. */
static int open_below_web_root(const char *path, size_t length) {
    char segment[256];
    const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
    int directory = open(web_root, O_RDONLY | O_DIRECTORY), fd = -1;
    size_t at = 1; /* after the leading '/' */
    while (directory >= 0) {
        size_t end = at;
        int last;
        while (end < length && path[end] != '/') end++;
        last = end == length;
        if (end - at >= sizeof segment) break;
        memcpy(segment, path + at, end - at);
        segment[end - at] = '\0';
        fd = openat(directory, segment, flags | (last ? 0 : O_DIRECTORY));
        close(directory);
        directory = -1;
        if (fd < 0 || last) break;
        directory = fd;
        fd = -1;
        at = end + 1;
    }
    if (directory >= 0) close(directory);
    return fd;
}
#endif

static void web_serve_file(vrs_server *server, vrs_conn conn, const char *path, size_t length) {
    const char *type;
    char name[256];
    struct stat info;
    ssize_t got;
    size_t total = 0;
    int fd;
    if (length == 1) { /* "/" */
        path = "/index.html";
        length = 11;
    }
    if (!is_plain_path(path, length) || length >= sizeof name) goto not_found;
    memcpy(name, path, length);
    name[length] = '\0';
    type = content_type_of(name);
    if (!type) goto not_found;
    fd = open_below_web_root(path, length);
    if (fd < 0) goto not_found;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size > WEB_MAX_FILE) {
        close(fd);
        goto not_found;
    }
    while (total < (size_t)info.st_size && (got = read(fd, web_file_buffer + total, sizeof web_file_buffer - total)) > 0)
        total += (size_t)got;
    close(fd);
    vrs_http_respond(server, conn, 200, type, web_security_headers, web_file_buffer, total);
    return;
not_found:
    vrs_http_respond(server, conn, 404, "text/plain; charset=utf-8", web_security_headers, "404 Not Found\n", 14);
}

/* The page's folder: examples/web from where the server is started (as `make demo` does), or
   beside the binary (build/../examples/web) when started from elsewhere. */
static void web_find_root(const char *program) {
    static char beside_binary[512];
    struct stat info;
    const char *slash = strrchr(program, '/');
#ifdef _WIN32
    const char *backslash = strrchr(program, '\\');
    if (backslash && (!slash || backslash > slash)) slash = backslash;
#endif
    if (stat(web_root, &info) == 0 && S_ISDIR(info.st_mode)) return;
    if (!slash) return;
    snprintf(beside_binary, sizeof beside_binary, "%.*s/../examples/web", (int)(slash - program), program);
    if (stat(beside_binary, &info) == 0 && S_ISDIR(info.st_mode)) web_root = beside_binary;
}

#endif /* WEB_FILES_H */
