#include "proxy/server.hpp"

#include <malloc.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <future>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <sstream>

#include "mesh/health_checker.hpp"
#include "mesh/loader.hpp"
#include "mesh/outlier_detector.hpp"
#include "mesh/names.hpp"
#include "metrics/admin_server.hpp"
#include "metrics/collector.hpp"
#include "net/cpu.hpp"
#include "net/listen.hpp"
#include "net/log.hpp"
#include "proxy/access_log.hpp"
#include "proxy/capabilities.hpp"
#include "proxy/cli.hpp"
#include "proxy/json.hpp"
#include "proxy/version.hpp"
#include "proxy/worker.hpp"

namespace meshd::proxy {

namespace {

std::string now_rfc3339() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  tm utc;
  gmtime_r(&t, &utc);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

void raise_open_files_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; }

}  // namespace

class Server {
 public:
  explicit Server(const RunOptions& o) : opts_(o), started_(Clock::now()) {}

  int run() {
    log::set_level(opts_.log_level);
    raise_open_files_limit();
    if (int rc = load(); rc != kExitOk) return rc;
    if (int rc = plan_ingress(); rc != kExitOk) return rc;
    apply_listener_settings();
    if (int rc = bind(); rc != kExitOk) return rc;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      std::vector<int> ingress;
      for (auto& slot : ingress_) ingress.push_back(slot.sockets.release(i));
      workers_[i]->start(egress_.release(i), ingress);
    }
    publish_view();
    admin_.start();
    // The bound addresses are the start's result (SPEC §2): written at any log level.
    for (const auto& l : listeners_) log::always(log::Level::info, "listening " + l);
    log::write(log::Level::info, "node " + opts_.node + " of mesh " + config_->mesh.name + ", " +
                                     std::to_string(workers_.size()) + (workers_.size() == 1 ? " worker" : " workers"));

    asio::signal_set signals(main_, SIGTERM, SIGINT);
    signals.async_wait([this](const error_code& ec, int) {
      if (!ec) begin_drain();
    });
    asio::signal_set hangup(main_, SIGHUP);
    std::function<void()> on_hangup = [&] {
      hangup.async_wait([&](const error_code& ec, int) {
        if (ec) return;
        reload("SIGHUP", false);
        on_hangup();
      });
    };
    on_hangup();
    watch_mesh_file();
    discovery_loop();
    readiness_deadline();
    trim_loop();
    main_.run();

    admin_.stop();
    for (auto& w : workers_) w->stop();
    workers_.clear();
    log::write(log::Level::info, "stopped");
    return kExitOk;
  }

 private:
  // ---- start-up ----------------------------------------------------------------
  // A loaded and compiled mesh, or the errors (one per line, `meshd validate`'s format).
  struct Candidate {
    std::shared_ptr<const mesh::MeshConfig> config;
    std::shared_ptr<const mesh::Snapshot> snap;
    std::string sha256;
    std::string errors;
  };

  Candidate try_load() const {
    Candidate c;
    auto result = mesh::load_mesh_file(opts_.mesh_file);
    c.sha256 = result.sha256;
    if (!result.ok()) {
      c.errors = result.diagnostics.format_all();
      return c;
    }
    auto config = std::make_shared<const mesh::MeshConfig>(std::move(*result.config));
    if (!opts_.mesh_from_env.empty() && opts_.mesh_from_env != config->mesh.name) {
      c.errors = "meshd: the environment names mesh '" + opts_.mesh_from_env + "' but " + opts_.mesh_file +
                 " is mesh '" + config->mesh.name + "'\n";
      return c;
    }
    mesh::Diagnostics diag;
    auto snap = mesh::Snapshot::compile(config, opts_.node, diag, opts_.mesh_file);
    if (!snap) {
      c.errors = diag.format_all();
      return c;
    }
    for (const auto& u : unsupported_features(*snap)) {
      c.errors += opts_.mesh_file + ": " + u.path + ": not supported by this build: " + u.reason + "\n";
    }
    if (!c.errors.empty()) return c;
    c.config = std::move(config);
    c.snap = std::move(snap);
    return c;
  }

  int load() {
    Candidate c = try_load();
    if (!c.errors.empty()) {
      std::cerr << c.errors << std::flush;  // the same lines as `meshd validate`, at any log level
      return kExitInvalid;
    }
    config_ = c.config;
    snap_ = c.snap;
    sha256_ = c.sha256;
    loaded_at_ = now_rfc3339();
    config_version_ = 1;
    publish_state();
    if (std::string error = apply_node_settings(); !error.empty()) {
      log::always(log::Level::error, error);
      return kExitRuntime;
    }
    registry_.set_snapshot(snap_);
    std::string error;
    resolver_ = std::make_unique<net::CaresResolver>(main_, opts_.limits.dns_resolvers, error);
    if (!error.empty()) {
      log::always(log::Level::error, error);
      return kExitRuntime;
    }
    return kExitOk;
  }

  // The node's own settings: the access log, and each served listener's connection
  // pool and rate limit (apply_listener_settings). Shared by every worker; a reload
  // replaces them for new requests. Returns an error, or empty.
  std::string apply_node_settings() {
    const auto& node = snap_->node();
    std::string error;
    access_log_.reset();
    if (node.spec.logging && node.spec.logging->access_log) {
      access_log_ = AccessLog::open(node.spec.logging->access_log->path, node.spec.logging->access_log->format, error);
    }
    apply_listener_settings();
    return error;  // the limits apply even when the access log could not be opened
  }

  // ---- ingress: the node's listeners, each on its own port (SPEC §9) ----------------
  // A listening slot: one of the node's listeners, where it is served, and the app
  // behind it. The first is --ingress-port; the others --ingress-port LISTENER=PORT.
  struct IngressSlot {
    std::uint16_t listener_port = 0;  // 0: the node has no listener (the app port alone)
    std::uint16_t bind_port = 0;
    std::optional<std::uint16_t> app_port;
    std::string name;  // "ingress", "ingress:9090"
    net::ListenSockets sockets;
    std::shared_ptr<mesh::Endpoint> app;
    std::shared_ptr<AppPoolLimit> app_limit;
    std::shared_ptr<mesh::TokenBucket> rate_limit;
  };

  const mesh::Listener* node_listener(std::uint16_t port) const {
    for (const auto& l : snap_->node().spec.listeners) {
      if (l.port_mapping.port == port) return &l;
    }
    return nullptr;
  }

  // The slots, from the node's listeners and the command line; exit 2 when a listener
  // would go unserved or a mapping names no listener.
  int plan_ingress() {
    const mesh::Listener* first = ingress_listener();
    IngressSlot primary;
    primary.name = "ingress";
    primary.bind_port = opts_.ingress_port;
    primary.app_port = opts_.app_port;
    if (first != nullptr) {
      primary.listener_port = static_cast<std::uint16_t>(first->port_mapping.port);
      if (!primary.app_port) primary.app_port = primary.listener_port;
    }
    ingress_.push_back(std::move(primary));
    std::string errors;
    for (const auto& [listener, port] : opts_.listener_ports) {
      if (node_listener(listener) == nullptr) {
        errors += "meshd: --ingress-port " + std::to_string(listener) + "=" + std::to_string(port) +
                  ": virtual node '" + opts_.node + "' has no listener on port " + std::to_string(listener) + "\n";
      } else if (listener == ingress_.front().listener_port) {
        errors += "meshd: --ingress-port " + std::to_string(listener) + "=" + std::to_string(port) +
                  ": port " + std::to_string(listener) + " is the node's first listener, served on --ingress-port\n";
      }
    }
    for (const auto& l : snap_->node().spec.listeners) {
      const auto lp = static_cast<std::uint16_t>(l.port_mapping.port);
      if (lp == ingress_.front().listener_port) continue;
      const auto it = std::find_if(opts_.listener_ports.begin(), opts_.listener_ports.end(),
                                   [&](const auto& m) { return m.first == lp; });
      if (it == opts_.listener_ports.end()) {
        errors += "meshd: virtual node '" + opts_.node + "' also listens on port " + std::to_string(lp) +
                  ": serve it with --ingress-port " + std::to_string(lp) + "=PORT (its app at 127.0.0.1:" +
                  std::to_string(lp) + ")\n";
        continue;
      }
      IngressSlot slot;
      slot.name = "ingress:" + std::to_string(lp);
      slot.listener_port = lp;
      slot.bind_port = it->second;
      slot.app_port = lp;
      ingress_.push_back(std::move(slot));
    }
    if (!errors.empty()) {
      std::cerr << errors << std::flush;
      return kExitUsage;
    }
    return kExitOk;
  }

  // Each slot's listener settings from the current snapshot (start and reload).
  void apply_listener_settings() {
    for (auto& slot : ingress_) {
      slot.app_limit.reset();
      slot.rate_limit.reset();
      const mesh::Listener* l = slot.listener_port != 0 ? node_listener(slot.listener_port) : nullptr;
      if (l == nullptr) continue;
      if (l->connection_pool) {
        if (const auto* http = std::get_if<mesh::HttpPool>(&l->connection_pool->kind)) {
          slot.app_limit = std::make_shared<AppPoolLimit>(
              static_cast<std::uint32_t>(http->max_connections),
              static_cast<std::uint32_t>(http->max_pending_requests.value_or(2147483647)));
        }
      }
      if (l->rate_limit) {
        slot.rate_limit = std::make_shared<mesh::TokenBucket>(
            l->rate_limit->requests_per_unit,
            l->rate_limit->unit == mesh::RateUnit::SECOND ? std::chrono::nanoseconds(std::chrono::seconds(1))
                                                          : std::chrono::nanoseconds(std::chrono::minutes(1)));
      }
    }
  }

  // What the admin thread shows of the loaded configuration (it never touches the
  // main thread's fields).
  struct PublishedState {
    std::string mesh;
    std::int64_t version = 0;
    std::string sha256, loaded_at, last_error, last_error_at;
  };

  void publish_state() {
    auto st = std::make_shared<PublishedState>();
    st->mesh = config_->mesh.name;
    st->version = config_version_;
    st->sha256 = sha256_;
    st->loaded_at = loaded_at_;
    st->last_error = last_error_;
    st->last_error_at = last_error_at_;
    state_.store(std::shared_ptr<const PublishedState>(std::move(st)));
  }

  // ---- reload (main thread) -------------------------------------------------------
  struct ReloadResult {
    bool ok = false;
    bool changed = false;
    std::string message;
  };

  ReloadResult reload(const char* why, bool only_if_changed) {
    Candidate c = try_load();
    if (only_if_changed && c.sha256 == sha256_) return {true, false, "unchanged"};
    if (!c.errors.empty()) {
      ++reloads_failure_;
      last_error_ = c.errors;
      last_error_at_ = now_rfc3339();
      publish_state();
      log::write(log::Level::warning, std::string("reload (") + why + ") failed; keeping config_version " +
                                          std::to_string(config_version_) + ":\n" + c.errors);
      return {false, true, c.errors};
    }
    config_ = c.config;
    snap_ = c.snap;
    sha256_ = c.sha256;
    loaded_at_ = now_rfc3339();
    ++config_version_;
    ++reloads_success_;
    last_error_.clear();
    last_error_at_.clear();
    if (std::string error = apply_node_settings(); !error.empty()) {
      // The rest of the reload stands.
      log::write(log::Level::warning, "reload: " + error + " (no access log until a reload can open it)");
    }
    for (const auto& l : snap_->node().spec.listeners) {
      const auto lp = static_cast<std::uint16_t>(l.port_mapping.port);
      if (std::none_of(ingress_.begin(), ingress_.end(), [&](const IngressSlot& s) { return s.listener_port == lp; })) {
        log::write(log::Level::warning, "reload: listener port " + std::to_string(lp) +
                                            " is new: it is served after a restart with --ingress-port " +
                                            std::to_string(lp) + "=PORT");
      }
    }
    registry_.set_snapshot(snap_);  // endpoints that remain keep their state
    publish_view();
    publish_state();
    // New DNS names are resolved at once rather than at the next refresh.
    registry_.refresh(*resolver_, [this] {
      if (registry_.table() != view_.load()->endpoints) publish_view();
    });
    log::write(log::Level::info, std::string("reloaded (") + why + "), config_version " + std::to_string(config_version_));
    return {true, true, "reloaded: config_version " + std::to_string(config_version_) + "\n"};
  }

  // inotify on the mesh file's directory: a write, an atomic rename, and the
  // `..data` symlink swap of a Kubernetes ConfigMap all show up there. Events are
  // debounced, and a reload happens only when the file's sha256 changed.
  void watch_mesh_file() {
    const std::string path = opts_.mesh_file;
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
      log::write(log::Level::warning, "cannot watch " + dir + " (reload with SIGHUP or POST /reload)");
      return;
    }
    if (inotify_add_watch(fd, dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB) < 0) {
      ::close(fd);
      log::write(log::Level::warning, "cannot watch " + dir + " (reload with SIGHUP or POST /reload)");
      return;
    }
    watch_fd_ = std::make_unique<asio::posix::stream_descriptor>(main_, fd);
    wait_for_events();
  }

  void wait_for_events() {
    watch_fd_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
      if (ec) return;
      char buf[4096];
      while (::read(watch_fd_->native_handle(), buf, sizeof buf) > 0) {
      }
      debounce_.expires_after(std::chrono::milliseconds(200));
      debounce_.async_wait([this](const error_code& e) {
        if (!e && !draining_) reload("file changed", true);
      });
      wait_for_events();
    });
  }

  int bind() {
    const unsigned n = opts_.workers > 0 ? opts_.workers : net::default_workers();
    std::error_code ec;
    egress_ = net::ListenSockets::open(*net::parse_ip("127.0.0.1"), opts_.egress_port, n, 4096, ec);
    if (ec) return bind_error("egress", "127.0.0.1:" + std::to_string(opts_.egress_port), ec);
    listeners_ = {"egress " + egress_.address()};
    for (auto& slot : ingress_) {
      slot.sockets = net::ListenSockets::open(*net::parse_ip("0.0.0.0"), slot.bind_port, n, 4096, ec);
      if (ec) return bind_error(slot.name.c_str(), "0.0.0.0:" + std::to_string(slot.bind_port), ec);
      listeners_.push_back(slot.name + " " + slot.sockets.address());
    }
    auto admin = net::split_host_port(opts_.admin, true);
    const std::string admin_bound = admin_.listen(
        admin->host, admin->port.value_or(0),
        [this](const std::string& m, const std::string& t) { return handle_admin(m, t, false); }, ec);
    if (ec) return bind_error("admin", opts_.admin, ec);
    listeners_.push_back("admin " + admin_bound);
    if (opts_.stats) {
      auto stats = net::split_host_port(*opts_.stats, true);
      const std::string stats_bound = admin_.listen(
          stats->host, stats->port.value_or(0),
          [this](const std::string& m, const std::string& t) { return handle_admin(m, t, true); }, ec);
      if (ec) return bind_error("stats", *opts_.stats, ec);
      listeners_.push_back("stats " + stats_bound);
    }
    for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(i, opts_.limits));
    // The first descriptor of each set is released per worker in run().
    return kExitOk;
  }

  int bind_error(const char* what, const std::string& address, const std::error_code& ec) {
    log::always(log::Level::error, std::string("cannot listen for ") + what + " on " + address + ": " + ec.message());
    return kExitRuntime;
  }

  // The node listener whose settings apply at ingress: the one on the app port, else
  // the one on the ingress port (a node reached at its listener port without
  // interception), else the first.
  const mesh::Listener* ingress_listener() const {
    const auto& listeners = snap_->node().spec.listeners;
    const mesh::Listener* listener = listeners.empty() ? nullptr : &listeners.front();
    for (const auto& l : listeners) {
      if (l.port_mapping.port == opts_.ingress_port) listener = &l;
    }
    for (const auto& l : listeners) {
      if (opts_.app_port && l.port_mapping.port == *opts_.app_port) listener = &l;
    }
    return listener;
  }

  // ---- state published to workers -------------------------------------------------
  void publish_view() {
    auto view = std::make_shared<RuntimeView>();
    view->snap = snap_;
    view->endpoints = registry_.table();
    view->node_label = metrics::intern(snap_->node().name);
    view->access_log = access_log_;
    view->outlier_notify = [this] { outlier_.notify(); };
    // Health checks and outlier detection follow the endpoints before workers see them.
    health_.update(*snap_, *view->endpoints);
    outlier_.update(snap_, view->endpoints);
    for (auto& slot : ingress_) {
      IngressView in;
      const mesh::Listener* listener = slot.listener_port != 0 ? node_listener(slot.listener_port) : nullptr;
      const bool removed = slot.listener_port != 0 && listener == nullptr;  // by a reload
      if (!removed) {
        in.listener_port = slot.listener_port == 0 ? slot.bind_port : slot.listener_port;
        if (slot.app_port) {
          if (!slot.app || slot.app->port != *slot.app_port) {
            slot.app = std::make_shared<mesh::Endpoint>();
            slot.app->ip = *net::parse_ip("127.0.0.1");
            slot.app->port = *slot.app_port;
            slot.app->text = net::endpoint_text(slot.app->ip, *slot.app_port);
          }
          in.app = slot.app;
        }
      }
      if (listener != nullptr && listener->timeout && listener->timeout->kind != mesh::Protocol::tcp) {
        const auto& t = listener->timeout->http;
        if (t.per_request) in.timeouts.per_request = t.per_request->millis();
        if (t.idle) in.timeouts.idle = t.idle->millis();
      }
      in.app_limit = slot.app_limit;
      in.rate_limit = slot.rate_limit;
      view->ingress.push_back(std::move(in));
    }
    std::shared_ptr<const RuntimeView> shared = view;
    view_.store(shared);
    for (auto& w : workers_) w->set_view(shared);
  }

  void discovery_loop() {
    registry_.refresh(*resolver_, [this] {
      if (registry_.table() != view_.load()->endpoints) publish_view();
      check_ready();
      auto timer = std::make_shared<asio::steady_timer>(main_, opts_.limits.dns_refresh);
      timer->async_wait([this, timer](const error_code& ec) {
        if (!ec) discovery_loop();
      });
    });
  }

  void check_ready() {
    // Ready once discovery answered and every checked endpoint had its first check.
    if (draining_ || ready_) return;
    if (registry_.all_answered() && health_.first_round_done()) {
      ready_ = true;
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(main_, std::chrono::milliseconds(50));
    timer->async_wait([this, timer](const error_code& ec) {
      if (!ec) check_ready();
    });
  }

  // Memory freed after a spike (thousands of connections) goes back to the OS: glibc
  // keeps freed memory in its arenas otherwise, and RSS would stay at the peak. Workers
  // also trim at once when a wave of connections ends (Worker::maybe_trim); this is the
  // backstop for everything else (reloads, DNS answers, the admin server).
  void trim_loop() {
    auto timer = std::make_shared<asio::steady_timer>(main_, std::chrono::seconds(5));
    timer->async_wait([this, timer](const error_code& ec) {
      if (ec) return;
      malloc_trim(0);
      trim_loop();
    });
  }

  void readiness_deadline() {
    // /ready waits for the first discovery answers, at most 10 s (SPEC §4).
    auto timer = std::make_shared<asio::steady_timer>(main_, std::chrono::seconds(10));
    timer->async_wait([this, timer](const error_code& ec) {
      if (!ec && !draining_) ready_ = true;
    });
  }

  // ---- drain ----------------------------------------------------------------------
  void begin_drain() {
    if (draining_.exchange(true)) return;
    ready_ = false;
    log::write(log::Level::info, "draining");
    for (auto& w : workers_) w->begin_drain();
    drain_started_ = Clock::now();
    drain_check();
  }

  void drain_check() {
    const auto elapsed = Clock::now() - drain_started_;
    std::size_t open = 0;
    for (auto& w : workers_) open += w->open_connections();
    if ((elapsed >= opts_.limits.drain_min && open == 0) || elapsed >= opts_.drain_timeout) {
      main_.stop();
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(main_, std::chrono::milliseconds(50));
    timer->async_wait([this, timer](const error_code& ec) {
      if (!ec) drain_check();
    });
  }

  // ---- admin (runs on the admin thread) -------------------------------------------
  metrics::AdminResponse handle_admin(const std::string& method, const std::string& target, bool stats_only) {
    const std::string path = target.substr(0, target.find('?'));
    if (method == "POST" && !stats_only) {
      if (path == "/reload") {
        auto promise = std::make_shared<std::promise<ReloadResult>>();
        auto future = promise->get_future();
        asio::post(main_, [this, promise] { promise->set_value(reload("POST /reload", false)); });
        if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
          return {503, "text/plain; charset=utf-8", "the reload did not finish in time\n"};
        }
        const auto r = future.get();
        return {r.ok ? 200 : 400, "text/plain; charset=utf-8", r.message};
      }
      if (path == "/drain") {
        // Answer once the drain has started, so that /ready and /server_info say so
        // to whoever asks next.
        auto started = std::make_shared<std::promise<void>>();
        auto future = started->get_future();
        asio::post(main_, [this, started] {
          begin_drain();
          started->set_value();
        });
        future.wait_for(std::chrono::seconds(5));
        return {202, "text/plain; charset=utf-8", "draining\n"};
      }
      return {404, "text/plain; charset=utf-8", "no such admin endpoint\n"};
    }
    if (method != "GET" && method != "HEAD") return {405, "text/plain; charset=utf-8", "use GET\n"};
    if (path == "/ready") {
      if (draining_) return {503, "text/plain; charset=utf-8", "DRAINING\n"};
      return ready_ ? metrics::AdminResponse{200, "text/plain; charset=utf-8", "LIVE\n"}
                    : metrics::AdminResponse{503, "text/plain; charset=utf-8", "PRE_INITIALIZING\n"};
    }
    if (path == "/server_info") return {200, "application/json", server_info()};
    if (path == "/metrics" || path == "/stats/prometheus") {
      return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text()};
    }
    if (path == "/config_dump") return {200, "application/json", config_dump()};
    if (path == "/clusters") return {200, "application/json", clusters()};
    return {404, "text/plain; charset=utf-8", "no such admin endpoint\n"};
  }

  std::string server_info() {
    Json j;
    j.begin_object();
    j.key("state").value(draining_ ? "DRAINING" : "LIVE");
    j.key("version").value(kVersion);
    j.key("node").value(opts_.node);
    const auto st = state_.load();
    j.key("mesh").value(st->mesh);
    j.key("uptime_seconds").value(static_cast<std::int64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count()));
    j.key("config_version").value(st->version);
    j.key("loaded_at").value(st->loaded_at);
    if (st->last_error.empty()) {
      j.key("last_error").null();
    } else {
      j.key("last_error").value(st->last_error);
      j.key("last_error_at").value(st->last_error_at);
    }
    j.key("workers").value(static_cast<std::int64_t>(workers_.size()));
    j.key("listeners").begin_array();
    for (const auto& l : listeners_) {
      const auto space = l.find(' ');
      j.begin_object().key("name").value(l.substr(0, space)).key("address").value(l.substr(space + 1)).end_object();
    }
    j.end_array();
    j.end_object();
    return j.str() + "\n";
  }

  std::string clusters() {
    auto view = view_.load();
    Json j;
    j.begin_object().key("clusters").begin_array();
    for (std::size_t i = 0; i < view->snap->clusters().size(); ++i) {
      const auto& c = view->snap->clusters()[i];
      j.begin_object();
      j.key("virtual_node").value(c.node_name);
      j.key("port").value(static_cast<std::int64_t>(c.port));
      j.key("discovery").value(c.describe_discovery());
      const auto* ce = i < view->endpoints->size() ? (*view->endpoints)[i].get() : nullptr;
      if (ce != nullptr && !ce->last_error.empty()) j.key("discovery_error").value(ce->last_error);
      j.key("endpoints").begin_array();
      if (ce != nullptr) {
        for (const auto& e : ce->endpoints) {
          j.begin_object();
          j.key("address").value(e->text);
          j.key("healthy").value(e->healthy.load());
          j.key("ejected").value(e->ejected.load());
          j.key("active_requests").value(static_cast<std::int64_t>(e->active_requests.load()));
          j.end_object();
        }
      }
      j.end_array().end_object();
    }
    j.end_array().end_object();
    return j.str() + "\n";
  }

  std::string config_dump() {
    auto view = view_.load();
    const auto& snap = *view->snap;
    Json j;
    j.begin_object();
    const auto st = state_.load();
    j.key("config_version").value(st->version);
    j.key("sha256").value(st->sha256);
    j.key("loaded_at").value(st->loaded_at);
    if (st->last_error.empty()) {
      j.key("last_error").null();
    } else {
      j.key("last_error").value(st->last_error);
      j.key("last_error_at").value(st->last_error_at);
    }
    j.key("mesh_file").value(opts_.mesh_file);
    j.key("effective").begin_object();
    j.key("mesh").value(snap.config().mesh.name);
    j.key("node").value(snap.node().name);
    j.key("egress_filter").value(std::string(mesh::to_string(snap.egress_filter())));
    const IngressView first = view->ingress.empty() ? IngressView{} : view->ingress.front();
    j.key("app").value(first.app ? first.app->text : std::string());
    j.key("ingress_timeouts").begin_object();
    j.key("per_request").value(ms_text(first.timeouts.per_request));
    j.key("idle").value(ms_text(first.timeouts.idle));
    j.end_object();
    j.key("ingress_listeners").begin_array();
    for (std::size_t i = 0; i < view->ingress.size(); ++i) {
      const auto& in = view->ingress[i];
      j.begin_object();
      j.key("listener_port").value(static_cast<std::int64_t>(in.listener_port));
      j.key("address").value(ingress_[i].sockets.address());
      j.key("app").value(in.app ? in.app->text : std::string());
      j.key("per_request").value(ms_text(in.timeouts.per_request));
      j.key("idle").value(ms_text(in.timeouts.idle));
      j.key("connection_pool").value(static_cast<std::int64_t>(in.app_limit ? in.app_limit->max_connections() : 0));
      j.end_object();
    }
    j.end_array();
    j.key("limits").begin_object();
    std::istringstream limits(opts_.limits.describe());
    std::string line;
    while (std::getline(limits, line)) {
      const auto eq = line.find('=');
      j.key(line.substr(0, eq)).value(line.substr(eq + 1));
    }
    j.end_object();
    j.key("virtual_services").begin_array();
    for (const auto& s : snap.services()) {
      j.begin_object();
      j.key("name").value(s.service->name);
      j.key("provider").value(s.provider == mesh::ServiceEntry::Provider::none ? std::string()
                                                                               : s.provider_name);
      j.key("listeners").begin_array();
      if (s.listeners != nullptr) {
        for (const auto& l : *s.listeners) {
          j.begin_object();
          j.key("port").value(static_cast<std::int64_t>(l.port));
          j.key("protocol").value(std::string(mesh::to_string(l.protocol)));
          j.key("routes").begin_array();
          for (const auto& r : l.routes) {
            j.begin_object();
            j.key("name").value(r.name);
            if (r.priority) j.key("priority").value(static_cast<std::int64_t>(*r.priority));
            j.key("match").value(r.match.describe());
            j.key("per_request_timeout").value(ms_text(r.timeouts.per_request));
            j.key("idle_timeout").value(ms_text(r.timeouts.idle));
            j.key("max_retries").value(static_cast<std::int64_t>(r.retry.max_retries));
            j.key("per_try_timeout").value(ms_text(r.retry.per_try_timeout));
            j.key("targets").begin_array();
            for (const auto& t : r.targets) {
              j.begin_object();
              j.key("virtual_node").value(snap.clusters()[t.cluster].node_name);
              j.key("port").value(static_cast<std::int64_t>(snap.clusters()[t.cluster].port));
              j.key("weight").value(static_cast<std::int64_t>(t.weight));
              j.end_object();
            }
            j.end_array().end_object();
          }
          j.end_array().end_object();
        }
      }
      j.end_array().end_object();
    }
    j.end_array();
    j.end_object();
    j.end_object();
    return j.str() + "\n";
  }

  std::string metrics_text() {
    metrics::Collector collector([this] {
      metrics::Snapshot s;
      for (auto& w : workers_) {
        auto f = w->scrape();
        if (f.wait_for(std::chrono::seconds(1)) == std::future_status::ready) s.merged.merge(f.get());
      }
      auto view = view_.load();
      for (std::size_t i = 0; i < view->endpoints->size(); ++i) {
        const auto& ce = (*view->endpoints)[i];
        for (const auto& e : ce->endpoints) {
          s.endpoints.push_back({ce->node, e->text, e->healthy.load(), e->ejected.load()});
        }
      }
      std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> outliers;  // node -> ejections, ejected
      for (std::size_t i = 0; i < view->endpoints->size(); ++i) {
        const auto& ce = (*view->endpoints)[i];
        if (mesh::cluster_listener(view->snap->clusters()[i]) == nullptr ||
            !mesh::cluster_listener(view->snap->clusters()[i])->outlier_detection) {
          continue;
        }
        auto& o = outliers[ce->node];
        o.first = ce->node_state->ejections_total.load();
        for (const auto& e : ce->endpoints) o.second += e->ejected.load() ? 1 : 0;
      }
      for (const auto& [node, o] : outliers) s.outliers.push_back({node, o.first, o.second});
      s.version = kVersion;
      s.mesh = state_.load()->mesh;
      s.config_reloads["success"] = reloads_success_.load();
      s.config_reloads["failure"] = reloads_failure_.load();
      s.node = opts_.node;
      return s;
    });
    return metrics::to_text(collector.Collect());
  }

  RunOptions opts_;
  Clock::time_point started_;
  asio::io_context main_{1};
  std::shared_ptr<const mesh::MeshConfig> config_;
  std::shared_ptr<const mesh::Snapshot> snap_;
  std::string sha256_, loaded_at_, last_error_, last_error_at_;
  std::int64_t config_version_ = 0;
  std::atomic<std::uint64_t> reloads_success_{0};
  std::atomic<std::uint64_t> reloads_failure_{0};
  std::atomic<std::shared_ptr<const PublishedState>> state_;
  std::unique_ptr<asio::posix::stream_descriptor> watch_fd_;
  asio::steady_timer debounce_{main_};
  mesh::EndpointRegistry registry_;
  std::unique_ptr<net::CaresResolver> resolver_;
  net::ListenSockets egress_;
  std::vector<IngressSlot> ingress_;
  std::vector<std::string> listeners_;
  metrics::AdminServer admin_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::shared_ptr<AccessLog> access_log_;
  mesh::HealthChecker health_{main_};
  mesh::OutlierDetector outlier_{main_};
  std::atomic<std::shared_ptr<const RuntimeView>> view_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> ready_{false};
  Clock::time_point drain_started_{};
};

int run_server(const RunOptions& options) {
  Server server(options);
  return server.run();
}

}  // namespace meshd::proxy
