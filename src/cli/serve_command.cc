// `ferry replica serve DIR --point P`: serves a recovery point (or an overlay over it) over
// NBD with nothing else running — the operator's way to reach any point with one command.
#include <malloc.h>

#include <csignal>
#include <cstdio>

#include "base/clock.h"
#include "cli/commands.h"
#include "cli/serve.h"
#include "journal/replica.h"
#include "nbd/replica_exports.h"
#include "nbd/server.h"

namespace ferry::cli {

Result<std::unique_ptr<Listener>> ListenOn(const std::string& address) {
  return ferry::ListenOn(address);
}

void ServeUntilSignalled(nbd::Server& server, const std::vector<std::string>& addresses,
                         const std::string& what, const sigset_t& stop) {
  for (const auto& a : addresses) {
    auto l = ListenOn(a);
    Check(l.status(), "cannot listen on " + a);
    std::string shown = (*l)->address();
    server.Listen(std::move(*l));
    std::string uri = shown.rfind("unix://", 0) == 0 ? "nbd+unix:///?socket=" + shown.substr(7)
                                                    : "nbd://" + shown.substr(6) + "/";
    std::printf("serving %s at %s\n", what.c_str(), uri.c_str());
  }
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  server.Stop();
}

sigset_t BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

void KeepLargeBuffersInTheHeap() {
  // glibc maps each allocation above its (dynamic) mmap threshold anew and hands freed heap
  // tops back to the kernel; a daemon that allocates and frees MiB-sized buffers all the time
  // (sync chunks, frames, compared windows) then pays a page fault for every 4 KiB of each,
  // which cost more than the copies themselves on a virtual machine (bench/RESULTS.md, "Notes
  // on the initial sync"). Fixed thresholds keep such buffers in the heap for reuse.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void AddServeCommand(CLI::App& replica) {
  auto* cmd = replica.add_subcommand("serve", "Serve a recovery point over NBD (read-only), or an overlay over it");
  auto dir = std::make_shared<std::string>();
  auto point = std::make_shared<std::string>("latest");
  auto listen = std::make_shared<std::vector<std::string>>();
  auto overlay = std::make_shared<std::string>();
  cmd->add_option("DIR", *dir, "Replica directory")->required();
  cmd->add_option("--point", *point, "latest | latest-app-consistent | SEQ | TIME | marker:ID")->capture_default_str();
  cmd->add_option("--listen", *listen, "tcp://HOST:PORT or unix:///PATH (repeatable; default tcp://127.0.0.1:10809)");
  cmd->add_option("--overlay", *overlay, "Serve this overlay read-write (created over --point if missing)");
  cmd->callback([=] {
    // Block the stop signals before any thread starts; this thread waits for them.
    sigset_t stop = BlockStopSignals();
    KeepLargeBuffersInTheHeap();

    auto spec = journal::PointSpec::Parse(*point);
    Check(spec.status(), "--point");
    auto opened = journal::Replica::Open(*dir);
    Check(opened.status(), "cannot open replica " + *dir);
    std::shared_ptr<journal::Replica> r = *opened;
    std::shared_ptr<nbd::Export> main_export;
    std::string what;
    if (!overlay->empty() && r->committed()) {
      auto o = r->GetOverlay(*overlay);
      Check(o.status(), "overlay");
      main_export = std::make_shared<nbd::OverlayExport>(*o);
      what = "committed disk " + *overlay + " (read-write)";
    } else {
      auto info = r->ResolvePoint(*spec);
      Check(info.status(), "cannot use point " + *point);
      if (!overlay->empty()) {
        auto o = r->GetOverlay(*overlay);
        if (!o.ok() && o.status().code() == Code::kNotFound) o = r->CreateOverlay(*overlay, info->seq);
        Check(o.status(), "overlay " + *overlay);
        main_export = std::make_shared<nbd::OverlayExport>(*o);
        what = "overlay " + *overlay + " over seq " + std::to_string((*o)->point()) + " (read-write)";
      } else {
        auto view = r->OpenView(info->seq);
        Check(view.status(), "cannot open point");
        main_export = std::make_shared<nbd::ViewExport>(*view, "recovery point seq " + std::to_string(info->seq));
        what = "recovery point seq " + std::to_string(info->seq) + " (" + FormatTime(info->timestamp_ns) + ", read-only)";
      }
    }
    auto catalog = std::make_shared<nbd::ReplicaCatalog>(r, main_export);
    nbd::Server server(catalog);
    std::vector<std::string> addresses = listen->empty() ? std::vector<std::string>{"tcp://127.0.0.1:10809"} : *listen;
    std::printf("other points: export name @POINT (e.g. @latest-app-consistent, @1234); stop with Ctrl-C\n");
    ServeUntilSignalled(server, addresses, what, stop);
    if (!overlay->empty()) {
      if (auto o = r->GetOverlay(*overlay); o.ok()) Check((*o)->Flush(), "flush overlay");
    }
    auto st = server.stats();
    std::printf("stopped: %llu connections, %llu requests, %llu bytes read, %llu bytes written\n",
                static_cast<unsigned long long>(st.connections), static_cast<unsigned long long>(st.requests),
                static_cast<unsigned long long>(st.bytes_read), static_cast<unsigned long long>(st.bytes_written));
  });
}

}  // namespace ferry::cli
