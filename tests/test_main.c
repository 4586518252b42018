/* The test binary: the library's implementation and every test file in one translation unit,
   so tests can reach the private vrs__ functions they check. */
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
