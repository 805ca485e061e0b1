// The model and its single-process trainer at float (instances.hpp), compiled once for the programs
// that link dm2s2_instances.

#define DM2S2_DEFINING_INSTANCES
#include "instances.hpp"

DM2S2_INSTANCES(, float)
