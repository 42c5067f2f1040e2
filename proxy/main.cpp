// meshd's entry point: arguments and start-up only (DESIGN "Folders").
#include "proxy/cli.hpp"

int main(int argc, char** argv) { return meshd::proxy::run_cli(argc, argv); }
