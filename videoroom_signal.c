#define VRS_IMPLEMENTATION
#include "videoroom_signal.h"
