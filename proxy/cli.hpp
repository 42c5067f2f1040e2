#pragma once
// `meshd <command>`: parses the command line and runs one subcommand (SPEC §2).
namespace meshd::proxy {

inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;  // invalid configuration or request
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRuntime = 3;  // a port in use, an unreadable file, an OS limit

int run_cli(int argc, char** argv);

}  // namespace meshd::proxy
