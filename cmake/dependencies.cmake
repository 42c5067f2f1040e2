# All third-party dependencies come from Debian 12 packages (scripts/install-deps.sh).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(Boost 1.81 EXACT REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(CARES REQUIRED IMPORTED_TARGET libcares)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
find_package(OpenSSL 3 REQUIRED)
find_package(prometheus-cpp REQUIRED COMPONENTS core)

# llhttp: Debian ships only the C sources (node-llhttp). Build them as a static
# library in strict mode: without it llhttp 8.1.0 accepts chunk data without a
# trailing CRLF and a bare CR ending the headers (CVE-2023-30589).
set(LLHTTP_SRC_DIR /usr/share/llhttp CACHE PATH "llhttp C sources")
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp CACHE PATH "llhttp header")
add_library(meshd_llhttp STATIC
  ${LLHTTP_SRC_DIR}/llhttp.c ${LLHTTP_SRC_DIR}/api.c ${LLHTTP_SRC_DIR}/http.c)
target_include_directories(meshd_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
target_compile_definitions(meshd_llhttp PUBLIC LLHTTP_STRICT_MODE=1)
target_compile_options(meshd_llhttp PRIVATE -w)
set_target_properties(meshd_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)

# Asio recycles coroutine frames and handler memory per thread, but keeps only 2
# blocks of each kind by default: a request's chain of nested awaitables (the
# lifecycle, the adapters, their writes) is deeper than that, so each request paid
# a dozen malloc/free pairs. 16 keeps the whole chain (docs/benchmarks.md). Every
# translation unit must agree on it (the per-thread cache's layout): set here,
# for every target, the fuzz project included.
add_compile_definitions(BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE=16)
