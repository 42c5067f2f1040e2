#pragma once
// meshd's own log lines (not the access log): "meshd: TEXT" on stdout for info and
// below, on stderr for warnings and errors, each line written with one write(2) so
// that lines from several threads never interleave. `meshd run --log-level` sets the
// threshold (default info). Lines that are the result of the command itself (the
// bound addresses, the errors that end `meshd run` at start) are written with
// `always()` and do not depend on the level.
#include <optional>
#include <string_view>

namespace meshd::log {

enum class Level { trace, debug, info, warning, error, off };

std::optional<Level> parse_level(std::string_view name);  // trace debug info warning error off
void set_level(Level level);
bool enabled(Level level);

void write(Level level, std::string_view text);   // when enabled(level)
void always(Level level, std::string_view text);  // regardless of the threshold

}  // namespace meshd::log
