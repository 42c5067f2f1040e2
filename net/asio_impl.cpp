// Boost.Asio compiled once (BOOST_ASIO_SEPARATE_COMPILATION), not in every file that
// uses it: compile time matters on two cores (DESIGN "Conventions").
#include <boost/asio/impl/src.hpp>
