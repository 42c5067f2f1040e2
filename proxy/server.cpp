#include "proxy/server.hpp"

#include <malloc.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <future>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <sstream>

#include "mesh/config/loader.hpp"
#include "mesh/config/names.hpp"
#include "metrics/admin_server.hpp"
#include "net/cpu.hpp"
#include "net/listen.hpp"
#include "net/log.hpp"
#include "proxy/access_log.hpp"
#include "proxy/admin_endpoints.hpp"
#include "proxy/capabilities.hpp"
#include "proxy/cli.hpp"
#include "proxy/cluster_manager.hpp"
#include "proxy/config_watcher.hpp"
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


}  // namespace

// `meshd run`, wired: the config (load, reload on the watcher's word), the listeners
// and workers, the cluster manager, the admin endpoints, and the drain.
class Server final : public AdminHost {
 public:
  explicit Server(const RunOptions& o) : opts_(o), started_(Clock::now()) {}

  // AdminHost (the admin thread).
  const RunOptions& options() const override { return opts_; }
  Clock::time_point started() const override { return started_; }
  std::shared_ptr<const PublishedState> state() const override { return state_.load(); }
  std::shared_ptr<const RuntimeView> view() const override { return view_.load(); }
  bool draining() const override { return draining_; }
  bool ready() const override { return ready_; }
  std::uint64_t reloads(bool success) const override {
    return success ? reloads_success_.load() : reloads_failure_.load();
  }
  std::size_t worker_count() const override { return workers_.size(); }
  const std::vector<std::string>& listeners() const override { return listeners_; }
  std::string ingress_address(std::size_t slot) const override {
    return slot < ingress_.size() ? ingress_[slot].sockets.address() : std::string();
  }
  metrics::Shard scrape_workers() override {
    metrics::Shard merged;
    for (auto& w : workers_) {
      auto f = w->scrape();
      if (f.wait_for(std::chrono::seconds(1)) == std::future_status::ready) merged.merge(f.get());
    }
    return merged;
  }
  ReloadResult reload_now() override {
    auto promise = std::make_shared<std::promise<ReloadResult>>();
    auto future = promise->get_future();
    asio::post(main_, [this, promise] { promise->set_value(reload("POST /reload", false)); });
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      return {false, false, "the reload did not finish in time\n"};
    }
    return future.get();
  }
  void drain_now() override {
    // Returns once the drain has started, so that /ready and /server_info say so to
    // whoever asks next.
    auto started = std::make_shared<std::promise<void>>();
    auto future = started->get_future();
    asio::post(main_, [this, started] {
      begin_drain();
      started->set_value();
    });
    future.wait_for(std::chrono::seconds(5));
  }

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
    watcher_.start();
    clusters_.discover([this] {
      if (clusters_.current() != view_.load()->endpoints) publish_view();
      check_ready();
    });
    readiness_deadline();
    trim_loop();
    main_.run();

    watcher_.stop();
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
    clusters_.set_snapshot(snap_);
    if (std::string error = clusters_.start(); !error.empty()) {
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
        } else if (const auto* h2 = std::get_if<mesh::Http2Pool>(&l->connection_pool->kind)) {
          // SPEC §7: concurrent streams to the app, no pending queue (over it: 503
          // overflow, or its gRPC form).
          slot.app_limit = std::make_shared<AppPoolLimit>(static_cast<std::uint32_t>(h2->max_requests), 0);
        } else if (const auto* grpc = std::get_if<mesh::GrpcPool>(&l->connection_pool->kind)) {
          slot.app_limit = std::make_shared<AppPoolLimit>(static_cast<std::uint32_t>(grpc->max_requests), 0);
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
    clusters_.set_snapshot(snap_);  // endpoints that remain keep their state
    publish_view();
    publish_state();
    // New DNS names are resolved at once rather than at the next refresh.
    clusters_.refresh([this] {
      if (clusters_.current() != view_.load()->endpoints) publish_view();
    });
    log::write(log::Level::info, std::string("reloaded (") + why + "), config_version " + std::to_string(config_version_));
    return {true, true, "reloaded: config_version " + std::to_string(config_version_) + "\n"};
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
        [this](const std::string& m, const std::string& t) { return admin_endpoints_.handle(m, t, false); }, ec);
    if (ec) return bind_error("admin", opts_.admin, ec);
    listeners_.push_back("admin " + admin_bound);
    if (opts_.stats) {
      auto stats = net::split_host_port(*opts_.stats, true);
      const std::string stats_bound = admin_.listen(
          stats->host, stats->port.value_or(0),
          [this](const std::string& m, const std::string& t) { return admin_endpoints_.handle(m, t, true); }, ec);
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
    // Health checks and outlier detection follow the endpoints before workers see them.
    view->endpoints = clusters_.table();
    view->node_label = metrics::intern(snap_->node().name);
    view->access_log = access_log_;
    view->outlier_notify = clusters_.outlier_notifier();
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
      // SPEC §7: ingress to the app speaks the listener's protocol.
      if (listener != nullptr && (listener->port_mapping.protocol == mesh::Protocol::http2 ||
                                  listener->port_mapping.protocol == mesh::Protocol::grpc)) {
        in.app_protocol = UpstreamProtocol::http2;
      }
      view->ingress.push_back(std::move(in));
    }
    std::shared_ptr<const RuntimeView> shared = view;
    view_.store(shared);
    for (auto& w : workers_) w->set_view(shared);
  }

  void check_ready() {
    // Ready once discovery answered and every checked endpoint had its first check.
    if (draining_ || ready_) return;
    if (clusters_.first_round_done()) {
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
  ConfigWatcher watcher_{main_, opts_.mesh_file, [this](const char* why, bool only_if_changed) {
                            if (!only_if_changed || !draining_) reload(why, only_if_changed);
                          }};
  ClusterManager clusters_{main_, opts_.limits};
  net::ListenSockets egress_;
  std::vector<IngressSlot> ingress_;
  std::vector<std::string> listeners_;
  metrics::AdminServer admin_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::shared_ptr<AccessLog> access_log_;
  AdminEndpoints admin_endpoints_{*this};
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
