#include "bench/load/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace meshd::bench {

namespace {

constexpr double kPercentiles[] = {50, 90, 99, 99.9};

std::string ms(std::uint64_t micros) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(micros) / 1000.0);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string summary_table(const Result& r) {
  std::ostringstream out;
  char line[160];
  out << r.title << "\n";
  std::snprintf(line, sizeof line, "  %-14s %12.1f s\n", "duration", r.seconds);
  out << line;
  std::snprintf(line, sizeof line, "  %-14s %12llu\n", "requests", static_cast<unsigned long long>(r.requests));
  out << line;
  std::snprintf(line, sizeof line, "  %-14s %12.1f /s%s\n", "throughput", r.seconds > 0 ? r.requests / r.seconds : 0.0,
                r.target_rate > 0 ? (" (asked " + std::to_string(static_cast<long long>(r.target_rate)) + "/s)").c_str() : "");
  out << line;
  out << "  latency (ms)       p50       p90       p99     p99.9       max\n";
  std::snprintf(line, sizeof line, "  %-12s %9s %9s %9s %9s %9s\n", "", ms(r.latency.percentile(50)).c_str(),
                ms(r.latency.percentile(90)).c_str(), ms(r.latency.percentile(99)).c_str(),
                ms(r.latency.percentile(99.9)).c_str(), ms(r.latency.max()).c_str());
  out << line;
  for (const auto& [k, v] : r.status_classes) out << "  status " << k << ": " << v << "\n";
  for (const auto& [k, v] : r.errors) out << "  error " << k << ": " << v << "\n";
  return out.str();
}

std::string to_json(const Result& r) {
  std::ostringstream out;
  out << "{\"title\":" << json_string(r.title) << ",\"seconds\":" << r.seconds << ",\"requests\":" << r.requests
      << ",\"throughput\":" << (r.seconds > 0 ? r.requests / r.seconds : 0) << ",\"target_rate\":" << r.target_rate
      << ",\"latency_ms\":{";
  for (double p : kPercentiles) {
    char key[16];
    std::snprintf(key, sizeof key, "p%g", p);
    out << "\"" << key << "\":" << ms(r.latency.percentile(p)) << ",";
  }
  out << "\"max\":" << ms(r.latency.max()) << ",\"mean\":" << r.latency.mean() / 1000.0 << "},\"status\":{";
  bool first = true;
  for (const auto& [k, v] : r.status_classes) {
    out << (first ? "" : ",") << json_string(k) << ":" << v;
    first = false;
  }
  out << "},\"errors\":{";
  first = true;
  for (const auto& [k, v] : r.errors) {
    out << (first ? "" : ",") << json_string(k) << ":" << v;
    first = false;
  }
  out << "},\"per_second\":[";
  for (std::size_t i = 0; i < r.per_second.size(); ++i) out << (i ? "," : "") << r.per_second[i];
  out << "]}\n";
  return out.str();
}

std::string to_html(const Result& r) {
  // Latency by percentile on a log scale of 1/(1-p) (the HdrHistogram plot), and
  // throughput per second; plain SVG, no script, no network resource.
  const int w = 720, h = 300, pad = 50;
  std::ostringstream svg1;
  const double max_ms = std::max(0.001, static_cast<double>(r.latency.max()) / 1000.0);
  svg1 << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h << "'>";
  svg1 << "<rect width='100%' height='100%' fill='white'/>";
  svg1 << "<text x='" << w / 2 << "' y='18' text-anchor='middle' font-size='14'>Latency by percentile (ms)</text>";
  std::string points;
  const double max_x = std::log10(1.0 / (1.0 - 0.99999));
  for (double p = 0; p <= 99.999; p += (p < 90 ? 1 : p < 99 ? 0.1 : p < 99.9 ? 0.01 : 0.001)) {
    const double x = pad + (w - 2 * pad) * std::log10(1.0 / (1.0 - p / 100.0)) / max_x;
    const double y = h - pad - (h - 2 * pad) * (static_cast<double>(r.latency.percentile(p)) / 1000.0) / max_ms;
    points += std::to_string(x) + "," + std::to_string(y) + " ";
  }
  svg1 << "<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='" << points << "'/>";
  for (double p : {0.0, 90.0, 99.0, 99.9, 99.99}) {
    const double x = pad + (w - 2 * pad) * std::log10(1.0 / (1.0 - p / 100.0)) / max_x;
    svg1 << "<line x1='" << x << "' y1='" << h - pad << "' x2='" << x << "' y2='" << pad
         << "' stroke='#ddd'/><text x='" << x << "' y='" << h - pad + 16 << "' text-anchor='middle' font-size='11'>p"
         << p << "</text>";
  }
  svg1 << "<text x='" << pad - 5 << "' y='" << pad << "' text-anchor='end' font-size='11'>" << max_ms
       << "</text><text x='" << pad - 5 << "' y='" << h - pad << "' text-anchor='end' font-size='11'>0</text></svg>";

  std::ostringstream svg2;
  std::uint64_t peak = 1;
  for (auto v : r.per_second) peak = std::max(peak, v);
  svg2 << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h << "'>";
  svg2 << "<rect width='100%' height='100%' fill='white'/>";
  svg2 << "<text x='" << w / 2 << "' y='18' text-anchor='middle' font-size='14'>Throughput (responses/s)</text>";
  std::string tp;
  const std::size_t n = std::max<std::size_t>(r.per_second.size(), 2);
  for (std::size_t i = 0; i < r.per_second.size(); ++i) {
    const double x = pad + (w - 2.0 * pad) * static_cast<double>(i) / static_cast<double>(n - 1);
    const double y = h - pad - (h - 2.0 * pad) * static_cast<double>(r.per_second[i]) / static_cast<double>(peak);
    tp += std::to_string(x) + "," + std::to_string(y) + " ";
  }
  svg2 << "<polyline fill='none' stroke='#2ca02c' stroke-width='2' points='" << tp << "'/>";
  svg2 << "<text x='" << pad - 5 << "' y='" << pad << "' text-anchor='end' font-size='11'>" << peak
       << "</text><text x='" << w - pad << "' y='" << h - pad + 16 << "' text-anchor='end' font-size='11'>"
       << r.per_second.size() << " s</text></svg>";

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>meshd-bench: " << escape(r.title)
       << "</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
          "</style></head><body>\n<h1>meshd-bench</h1>\n<p>"
       << escape(r.title) << "</p>\n<table><tr><th>requests</th><th>throughput</th><th>p50 ms</th><th>p90 ms</th>"
       << "<th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr><tr><td>" << r.requests << "</td><td>"
       << (r.seconds > 0 ? static_cast<long long>(r.requests / r.seconds) : 0) << "/s</td>";
  for (double p : kPercentiles) html << "<td>" << ms(r.latency.percentile(p)) << "</td>";
  html << "<td>" << ms(r.latency.max()) << "</td></tr></table>\n<pre>" << escape(summary_table(r)) << "</pre>\n"
       << svg1.str() << "\n" << svg2.str() << "\n</body></html>\n";
  return html.str();
}

}  // namespace meshd::bench
