// `ferry capture serve DISK --log DIR`: serves a protected disk over NBD through the write
// splitter, so every write is captured into the pending log DIR before it is answered.
// (The node daemon will do this for its volumes; this runs it on its own.)
#include <cstdio>

#include "capture/splitter.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/serve.h"
#include "nbd/splitter_export.h"

namespace ferry::cli {
namespace {

// Serves exactly one export under every name.
class SingleCatalog final : public nbd::ExportCatalog {
 public:
  explicit SingleCatalog(std::shared_ptr<nbd::Export> e) : e_(std::move(e)) {}
  Result<std::shared_ptr<nbd::Export>> Find(const std::string&) override { return e_; }
  std::vector<std::pair<std::string, std::string>> List() override { return {{"", e_->description()}}; }

 private:
  std::shared_ptr<nbd::Export> e_;
};

}  // namespace

void AddCaptureCommands(CLI::App& app) {
  auto* capture = app.add_subcommand("capture", "Capture a protected disk's writes");
  capture->require_subcommand(1);
  auto* cmd = capture->add_subcommand("serve", "Serve DISK over NBD, capturing every write into the pending log");
  auto disk = std::make_shared<std::string>();
  auto log = std::make_shared<std::string>();
  auto listen = std::make_shared<std::vector<std::string>>();
  auto bs = std::make_shared<uint32_t>(4096);
  cmd->add_option("DISK", *disk, "Image file or block device")->required();
  cmd->add_option("--log", *log, "Pending log directory (created if missing)")->required();
  cmd->add_option("--listen", *listen, "tcp://HOST:PORT or unix:///PATH (repeatable; default tcp://127.0.0.1:10809)");
  cmd->add_option("--block-size", *bs, "Block size of a new pending log")->capture_default_str();
  cmd->callback([=] {
    sigset_t stop = BlockStopSignals();
    KeepLargeBuffersInTheHeap();
    Env* env = Env::Posix();
    auto f = env->OpenFile(*disk, OpenMode::kRead);
    Check(f.status(), "cannot open disk " + *disk);
    auto size = (*f)->Size();
    Check(size.status(), "cannot size " + *disk);
    f->reset();
    // Nothing trims this log: what is written back leaves the page cache (decision 0012).
    journal::ReplicaOptions o;
    o.cache_window_bytes = journal::kPendingLogCacheWindow;
    auto opened = journal::Replica::Open(*log, o);
    if (!opened.ok() && opened.status().code() == Code::kNotFound) {
      journal::CreateParams p;
      p.size = *size;
      p.block_size = *bs;
      opened = journal::Replica::Create(*log, p, o);
    }
    Check(opened.status(), "pending log " + *log);
    auto splitter = capture::Splitter::Open(env, *disk, *opened);
    Check(splitter.status(), "cannot start the splitter");
    std::shared_ptr<capture::Splitter> s = std::move(*splitter);
    nbd::Server server(std::make_shared<SingleCatalog>(std::make_shared<nbd::SplitterExport>(s)));
    std::vector<std::string> addresses = listen->empty() ? std::vector<std::string>{"tcp://127.0.0.1:10809"} : *listen;
    ServeUntilSignalled(server, addresses, "disk " + *disk + " (" + HumanBytes(*size) + ", writes captured to " + *log + ")", stop);
    Check(s->Flush(), "final flush");
    auto st = s->log().Stats();
    std::printf("stopped: pending log holds seq %llu..%llu\n",
                static_cast<unsigned long long>(st.oldest_point), static_cast<unsigned long long>(st.last_seq));
  });
}

}  // namespace ferry::cli
