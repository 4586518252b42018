/* The test binary: the library's implementation and every test file in one translation unit,
   so tests can reach the private vrs__ functions they check. */
#define VRS_IMPLEMENTATION
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

int main(int argc, char **argv) { return vrs_test_main(argc, argv); }
