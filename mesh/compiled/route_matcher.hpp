#pragma once
// A route's match, compiled once per snapshot: path (prefix / exact / RE2 full match),
// headers (exact / prefix / suffix / regex / range / presence, each invertible), query
// parameters, method, scheme. gRPC routes match on the service and method in the path,
// on metadata (headers), and only for gRPC requests.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mesh/compiled/request_view.hpp"
#include "mesh/config/model.hpp"

namespace re2 {
class RE2;
}

namespace meshd::mesh {

class RouteMatcher {
 public:
  static RouteMatcher from_http(const HttpRouteMatch& m);
  static RouteMatcher from_grpc(const GrpcRouteMatch& m);
  static RouteMatcher match_all();

  bool matches(const RequestView& req) const;
  // How specific the path match is, for ordering routes without a priority
  // (App Mesh sorted those longest match first).
  std::size_t specificity() const { return path_.value.size(); }
  std::string describe() const;  // e.g. "prefix /api, header x-beta exact true"

  struct Header {
    std::string name;  // lower-cased
    bool invert = false;
    bool presence_only = false;
    HeaderMatchMethod::Kind kind = HeaderMatchMethod::Kind::exact;
    std::string value;
    Range range;
    std::shared_ptr<const re2::RE2> regex;
  };

 private:
  enum class PathKind { any, prefix, exact, regex };
  struct Path {
    PathKind kind = PathKind::any;
    std::string value;
    std::shared_ptr<const re2::RE2> regex;
  };
  Path path_;
  std::vector<Header> headers_;
  std::vector<QueryParameterMatch> query_;
  std::optional<std::string> method_;
  std::optional<std::string> scheme_;
  bool grpc_only_ = false;
};

bool header_matches(const RouteMatcher::Header& h, const RequestView& req);
std::shared_ptr<const re2::RE2> compile_regex(const std::string& pattern);

}  // namespace meshd::mesh
