#pragma once
// Interned label strings: a stable pointer for a text (the same text gives the same
// pointer, for the life of the process), so a statistics key is a few pointers and
// compares by address. Called when a snapshot is compiled (mesh/compiled/snapshot.cpp),
// never per request; metrics/ keys its shards on them (metrics::intern names the same
// functions).
#include <string>
#include <string_view>

namespace meshd::net {

// Thread-safe (a mutex); the table is never freed.
const std::string* intern(std::string_view text);
// intern(""), the label of "none" (no route, no service, no node).
const std::string* empty_label();

}  // namespace meshd::net
