/* The thread tests' binary: the library's implementation, the test support and the tests of
   vrs_wake from other threads and from signal handlers, in one translation unit. The Makefile
   builds it under ThreadSanitizer, with poll() and a self-pipe, and with epoll and an eventfd. */
#define VRS_IMPLEMENTATION
#include "../videoroom_signal.h"

#include "test.h"
#include "test_support.h"

#include "test_threads.c"

int main(int argc, char **argv) { return vrs_test_main(argc, argv); }
