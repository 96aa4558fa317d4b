// SwiftPM wants at least one source file in a C target; the declaration is all that is needed.
#include "CFuzzerDriver.h"
