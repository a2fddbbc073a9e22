// The protocol is declarations only (include/tenure_proto.h); SwiftPM needs one source file per C target.
#include "tenure_proto.h"
