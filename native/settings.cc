// See settings.h.
#include "settings.h"

namespace qc {

namespace {
Settings g_settings;
}

const Settings& settings() { return g_settings; }
void configure(const Settings& s) { g_settings = s; }

}  // namespace qc
