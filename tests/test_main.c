/* The test binary: the library's implementation and every test file in one translation unit,
   so tests can reach the private vrs__ functions they check. */
/* 64-bit file offsets and inode numbers on 32-bit systems, set before any system header:
   without them readdir() fails with EOVERFLOW where an entry's offset or inode number needs
   more than 32 bits (ext4 gives 64-bit offsets in hashed directories to a 32-bit program
   under qemu-user), and the JSONTestSuite directory would look empty. */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#define VRS_IMPLEMENTATION
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN /* windows.h without the names that clash with the tests' own */
#endif
#include "../videoroom_signal.h"

#include "test.h"
#include "test_support.h"

#include "test_codecs.c"
#include "test_websocket.c"
#include "test_json.c"
#include "test_phoenix.c"
#include "test_hardening.c"
#include "test_faults.c"
#include "test_flow.c"
#include "test_fuzz_regressions.c"
#include "test_cluster.c"

int main(int argc, char **argv) {
    ts_start_sockets();
    return vrs_test_main(argc, argv);
}
