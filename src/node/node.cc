#include "node/node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "env/env.h"
#include "journal/points.h"
#include "link/codec.h"
#include "node/hooks.h"
#include "node/node_internal.h"
#include "node/promotion.h"

namespace ferry::node {

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 128) return false;
  for (char c : n) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return n[0] != '.';
}

namespace {

// The replicas this node keeps as a link's target.
journal::ReplicaOptions TargetReplicaOptions() {
  journal::ReplicaOptions o;
  // Segments retention merged are reused: direct appends then overwrite allocated blocks and
  // need no metadata commit per write (docs/decisions/0011, "Replicas").
  o.recycle_segments = 4;
  return o;
}

}  // namespace

Node::Node(NodeConfig config)
    : config_(std::move(config)),
      node_throttle_(SystemClock::Default(), config_.throttle_bytes_per_second),
      replicas_(JoinPath(config_.data_dir, "replicas"), TargetReplicaOptions()),
      receiver_(&replicas_) {}

Result<std::unique_ptr<Node>> Node::Start(const NodeConfig& config) {
  std::unique_ptr<Node> n(new Node(config));
  Status s = n->Open();
  if (!s.ok()) {
    n->Stop();
    return s;
  }
  return n;
}

Status Node::Open() {
  Env* env = Env::Posix();
  RETURN_IF_ERROR(env->CreateDir(config_.data_dir));
  RETURN_IF_ERROR(env->CreateDir(JoinPath(config_.data_dir, "volumes")));
  ASSIGN_OR_RETURN(machines_, Machines::Open(config_));
  if (!config_.insecure) {
    TlsFiles files{config_.tls_cert, config_.tls_key, config_.tls_ca, ""};
    ASSIGN_OR_RETURN(tls_server_, TlsContext::Server(files));
    ASSIGN_OR_RETURN(tls_client_, TlsContext::Client(files));
  }
  // Before the replicas open: a promote that passed its commit point has moved (or will
  // move) its replica's image out, so that replica must go first.
  Promotion promotion(env, JoinPath(config_.data_dir, "volumes"),
                      [this](const std::string& id) { return RemoveReplicaFiles(id); });
  RETURN_IF_ERROR(promotion.Recover());
  RETURN_IF_ERROR(replicas_.OpenAll());
  ASSIGN_OR_RETURN(auto names, env->ListDir(JoinPath(config_.data_dir, "volumes")));
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (!ValidName(name)) continue;
    if (!env->Exists(JoinPath(JoinPath(JoinPath(config_.data_dir, "volumes"), name), "volume.json"))) {
      // What a removed volume left: the disk that a promote placed in its directory.
      continue;
    }
    Status s = OpenVolume(name);
    if (!s.ok()) return s.WithContext("volume " + name);
  }
  catalog_ = std::make_shared<Catalog>(this);
  nbd_ = std::make_unique<nbd::Server>(catalog_);
  for (const std::string& a : config_.nbd_listen) {
    auto l = ListenOn(a);
    if (!l.ok()) return l.status().WithContext("listen.nbd " + a);
    nbd_addresses_.push_back((*l)->address());
    nbd_->Listen(std::move(*l));
  }
  if (!config_.link_listen.empty()) {
    auto l = ListenOn(config_.link_listen);
    if (!l.ok()) return l.status().WithContext("listen.link " + config_.link_listen);
    link_listener_ = std::move(*l);
    link_accept_ = std::thread([this] { AcceptLinks(); });
  }
  marker_thread_ = std::thread([this] { MarkerLoop(); });
  retention_thread_ = std::thread([this] { RetentionLoop(); });
  return Status::Ok();
}

Node::~Node() { Stop(); }

void Node::Stop() {
  {
    std::lock_guard l(mu_);
    if (stopping_ && !marker_thread_.joinable() && !link_accept_.joinable() &&
        !retention_thread_.joinable()) {
      return;
    }
    stopping_ = true;
    cv_.notify_all();
  }
  if (marker_thread_.joinable()) marker_thread_.join();
  if (retention_thread_.joinable()) retention_thread_.join();
  if (link_listener_) link_listener_->Shutdown();
  if (link_accept_.joinable()) link_accept_.join();
  receiver_.Stop();
  std::list<std::thread> conns;
  std::map<std::string, std::shared_ptr<Volume>> volumes;
  {
    std::lock_guard l(mu_);
    conns.swap(link_conns_);
    volumes = volumes_;
  }
  for (auto& t : conns) t.join();
  {
    std::lock_guard l(mu_);
    for (auto& [id, b] : barriers_) {
      for (auto& v : b.volumes) v->splitter->ReleaseAcks();
    }
    barriers_.clear();
  }
  for (auto& [name, v] : volumes) {
    if (v->splitter) v->splitter->SetAckWaiter(nullptr);
    if (v->sender) v->sender->Stop();
  }
  if (nbd_) nbd_->Stop();
}

std::vector<std::string> Node::nbd_addresses() const { return nbd_addresses_; }

std::string Node::link_address() const {
  return link_listener_ ? link_listener_->address() : std::string();
}

void Node::AcceptLinks() {
  for (;;) {
    auto sock = link_listener_->Accept();
    if (!sock.ok()) return;
    std::lock_guard l(mu_);
    if (stopping_) return;
    // Finished connection threads are joined as new ones come (they end quickly on Stop).
    link_conns_.emplace_back([this, s = std::move(sock).value()]() mutable {
      std::unique_ptr<Stream> stream;
      if (tls_server_) {
        auto t = TlsStream::Accept(tls_server_, std::move(s));
        if (!t.ok()) {
          spdlog::warn("link connection refused: {}", t.status().ToString());
          return;
        }
        stream = std::move(t).value();
      } else {
        stream = std::move(s);
      }
      (void)receiver_.Serve(std::move(stream));
    });
  }
}

Status Node::OpenVolume(const std::string& name) {
  Env* env = Env::Posix();
  const std::string dir = JoinPath(JoinPath(config_.data_dir, "volumes"), name);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(env, JoinPath(dir, "volume.json")));
  auto v = std::make_shared<Volume>();
  try {
    json j = json::parse(text);
    v->name = j.at("name").get<std::string>();
    v->disk = j.at("disk").get<std::string>();
    v->capture = j.value("capture", std::string("splitter"));
    v->scan_interval_ms = j.value("scan_interval_ms", int64_t{60000});
    v->fenced = j.value("fenced", false);
    v->aliases = j.value("aliases", std::vector<std::string>{});
    v->promoted_from = j.value("promoted_from", json(nullptr));
    v->diverged = j.value("diverged", json(nullptr));
    v->acked_at_stop = j.value("acked_at_stop", uint64_t{0});
    if (j.contains("protect")) {
      const json& p = j.at("protect");
      v->protect = true;
      v->params.target = p.at("target").get<std::string>();
      v->params.bytes_per_second = p.value("bytes_per_second", uint64_t{0});
      v->params.marker_interval_ms = p.value("marker_interval_ms", int64_t{5000});
      v->params.mode = p.value("mode", std::string("async"));
      v->params.sync_timeout_ms = p.value("sync_timeout_ms", int64_t{2000});
      v->params.freeze_command = p.value("freeze_command", std::string());
      v->params.thaw_command = p.value("thaw_command", std::string());
      v->params.hook_timeout_ms = p.value("hook_timeout_ms", int64_t{10000});
      v->params.app_interval_ms = p.value("app_interval_ms", int64_t{0});
      v->params.pending_cap_bytes = p.value("pending_cap_bytes", uint64_t{4} << 30);
      v->params.compression = p.value("compression", std::string("zstd"));
      v->params.retention_seconds = p.value("retention_seconds", kDefaultRetentionSeconds);
      v->link_state = p.value("state", std::string("running"));
    }
  } catch (const std::exception& e) {
    return DataLoss(JoinPath(dir, "volume.json") + ": " + e.what());
  }
  journal::ReplicaOptions o;
  // Trimming drops whole segments: keep them well below the smallest cap (64 MiB).
  o.segment_target_bytes = 16ull << 20;
  // Trimmed segments are reused: appends overwrite cached pages (docs/decisions/0011).
  o.recycle_segments = 8;
  // What no link trims (a link down or far behind) is written back and leaves the page cache
  // (decision 0012). The window is well above what a link that keeps up holds (about 1 s of
  // writes: 50 MiB at 50 MB/s), so that such a link costs no early writeback and keeps its
  // segments' pages for reuse.
  o.cache_window_bytes = 4 * journal::kPendingLogCacheWindow;
  ASSIGN_OR_RETURN(v->log, journal::Replica::Open(JoinPath(dir, "log"), o));
  if (v->capture == "scan") {
    capture::ScanOptions so;
    Volume* vol = v.get();
    auto hook = [this, vol](bool freeze) -> Status {
      ProtectParams p;
      {
        std::lock_guard l(mu_);
        p = vol->params;
      }
      const std::string& cmd = freeze ? p.freeze_command : p.thaw_command;
      if (cmd.empty()) return Status::Ok();
      return RunHook(cmd, {{"FERRY_VOLUME", vol->name}, {"FERRY_DISK", vol->disk},
                           {"FERRY_HOOK", freeze ? "freeze" : "thaw"}},
                     p.hook_timeout_ms);
    };
    so.freeze = [hook] { return hook(true); };
    so.thaw = [hook] { return hook(false); };
    ASSIGN_OR_RETURN(auto scan, capture::ScanCapture::Open(env, v->disk, v->log, JoinPath(dir, "scan"), so));
    v->scan = std::move(scan);
  } else {
    ASSIGN_OR_RETURN(auto splitter, capture::Splitter::Open(env, v->disk, v->log));
    v->splitter = std::move(splitter);
    if (v->fenced) v->splitter->Fence();
  }
  auto dirty = capture::DirtyMap::Open(env, JoinPath(dir, "dirty.map"), v->log->size());
  if (!dirty.ok()) {
    // Changes we can no longer name: resyncing every block is safe.
    events_.Add("warning", name, dirty.status().ToString() + "; every block will be resynced");
    RETURN_IF_ERROR(env->RemoveFile(JoinPath(dir, "dirty.map")));
    ASSIGN_OR_RETURN(dirty, capture::DirtyMap::Open(env, JoinPath(dir, "dirty.map"), v->log->size()));
    (*dirty)->SetAll();
    RETURN_IF_ERROR((*dirty)->Save());
  }
  v->dirty = std::shared_ptr<capture::DirtyMap>(std::move(*dirty));
  const std::string delta_path = JoinPath(dir, kDeltaMapFile);
  if (v->diverged.is_object() && env->Exists(delta_path)) {
    auto delta = capture::DirtyMap::Open(env, delta_path, v->log->size(), v->log->block_size());
    if (delta.ok()) {
      v->delta = std::move(*delta);
    } else {
      // Without them a seeded sync compares digests: slower, never wrong.
      events_.Add("warning", name, delta.status().ToString() +
                                       "; a seeded sync of this volume will compare digests instead");
    }
  }
  if (v->protect && v->link_state != "stopped") RETURN_IF_ERROR(StartLink(*v));
  std::lock_guard l(mu_);
  volumes_[name] = v;
  return Status::Ok();
}

json Node::VolumeSettings(const Volume& v) {
  json j = {{"name", v.name}, {"disk", v.disk}, {"capture", v.capture},
            {"scan_interval_ms", v.scan_interval_ms}};
  if (v.fenced) j["fenced"] = true;
  if (!v.aliases.empty()) j["aliases"] = v.aliases;
  if (!v.promoted_from.is_null()) j["promoted_from"] = v.promoted_from;
  if (!v.diverged.is_null()) j["diverged"] = v.diverged;
  if (v.acked_at_stop != 0) j["acked_at_stop"] = v.acked_at_stop;
  if (v.protect) {
    j["protect"] = {{"target", v.params.target},
                    {"bytes_per_second", v.params.bytes_per_second},
                    {"marker_interval_ms", v.params.marker_interval_ms},
                    {"mode", v.params.mode},
                    {"sync_timeout_ms", v.params.sync_timeout_ms},
                    {"freeze_command", v.params.freeze_command},
                    {"thaw_command", v.params.thaw_command},
                    {"hook_timeout_ms", v.params.hook_timeout_ms},
                    {"app_interval_ms", v.params.app_interval_ms},
                    {"pending_cap_bytes", v.params.pending_cap_bytes},
                    {"compression", v.params.compression},
                    {"retention_seconds", v.params.retention_seconds},
                    {"state", v.link_state}};
  }
  return j;
}

Status Node::StoreVolume(const Volume& v) {
  const json j = VolumeSettings(v);
  const std::string dir = JoinPath(JoinPath(config_.data_dir, "volumes"), v.name);
  return WriteFileAtomically(Env::Posix(), JoinPath(dir, "volume.json"), j.dump(2) + "\n");
}

Status Node::StartLink(Volume& v) {
  link::SenderConfig c;
  c.volume = v.name;
  c.source_node = config_.name;
  std::string host;
  uint16_t port;
  RETURN_IF_ERROR(SplitHostPort(v.params.target, &host, &port));
  auto tls = tls_client_;
  c.connect = [host, port, tls]() -> Result<std::unique_ptr<Stream>> {
    ASSIGN_OR_RETURN(auto s, ConnectTcp(host, port));
    if (!tls) return std::unique_ptr<Stream>(std::move(s));
    ASSIGN_OR_RETURN(auto t, TlsStream::Connect(tls, std::move(s)));
    return std::unique_ptr<Stream>(std::move(t));
  };
  c.disk_path = v.disk;
  c.trim_above_bytes = v.params.pending_cap_bytes / 4;
  // The chosen codec first; the others stay acceptable (the target takes the first it knows).
  std::stable_partition(c.codecs.begin(), c.codecs.end(),
                        [&](const std::string& codec) { return codec == v.params.compression; });
  if (v.scan) {
    auto log = v.log;
    auto scan = v.scan;
    Volume* vol = &v;
    c.mark = [log](const std::string& label) {
      return log->Append(journal::Record::Marker(journal::MarkerKind::kCrashConsistent, label));
    };
    c.checkpoint = [scan] { return scan->Checkpoint(); };
    c.reset_capture = [vol] {
      vol->full_cycle_marker = 0;
      vol->reset_pending = true;
    };
    c.full_cycle_marker = [vol] { return vol->full_cycle_marker.load(); };
  } else {
    auto splitter = v.splitter;
    c.mark = [splitter](const std::string& label) {
      return splitter->Mark(journal::MarkerKind::kCrashConsistent, label);
    };
    c.checkpoint = [splitter] { return splitter->Checkpoint(); };
    c.dirty = v.dirty;
    if (v.delta) {
      c.delta = v.delta;
      c.diverged_volume_id = v.diverged.value("volume_id", "");
      c.diverged_history_id = v.diverged.value("history_id", "");
      c.diverged_through = v.diverged.value("through", uint64_t{0});
    }
    c.rewrite = [splitter](uint64_t off, uint64_t len) { return splitter->Rewrite(off, len); };
    c.verify_path = JoinPath(JoinPath(JoinPath(config_.data_dir, "volumes"), v.name), "verify.json");
  }
  c.rate_bytes_per_second = v.params.bytes_per_second;
  c.node_throttle = &node_throttle_;
  c.retention_seconds = v.params.retention_seconds;
  v.sender = std::make_shared<link::LinkSender>(c, v.log);
  if (v.link_state == "paused") v.sender->Pause();
  v.sender->Start();
  if (v.params.mode == "sync" && v.splitter) {
    *v.sync_active = true;
    std::shared_ptr<link::LinkSender> sender = v.sender;
    auto active = v.sync_active;
    const std::string name = v.name;
    const int64_t timeout = v.params.sync_timeout_ms;
    v.splitter->SetAckWaiter([this, sender, active, name, timeout](uint64_t seq) {
      if (!active->load()) return;
      if (sender->WaitAcked(seq, timeout)) return;
      if (active->exchange(false)) {
        events_.Add("warning", name,
                    "synchronous replication fell back to asynchronous: the target did not "
                    "acknowledge seq " + std::to_string(seq) + " within " + std::to_string(timeout) +
                    " ms; writes are answered without waiting until the link has caught up");
      }
    });
  } else if (v.splitter) {
    v.splitter->SetAckWaiter(nullptr);
  }
  return Status::Ok();
}

Result<std::shared_ptr<Node::Volume>> Node::FindVolume(const std::string& name) {
  std::lock_guard l(mu_);
  auto it = volumes_.find(name);
  if (it == volumes_.end()) return NotFound("no capture volume '" + name + "' on node " + config_.name);
  return it->second;
}

Result<json> Node::AddVolume(const std::string& name, const std::string& disk, uint64_t create_size,
                             const std::string& capture, int64_t scan_interval_ms) {
  if (capture != "splitter" && capture != "scan") {
    return InvalidArgument("capture '" + capture + "': use splitter or scan");
  }
  if (capture == "scan" && scan_interval_ms < 1000) {
    return InvalidArgument("scan_interval_ms " + std::to_string(scan_interval_ms) +
                           " is below the minimum of 1000");
  }
  if (!ValidName(name)) {
    return InvalidArgument("volume name '" + name + "': use letters, digits, '-', '_' and '.'");
  }
  if (disk.empty() || disk[0] != '/') return InvalidArgument("disk: give an absolute path");
  {
    std::lock_guard l(mu_);
    if (volumes_.count(name)) return AlreadyExists("volume " + name + " already exists");
  }
  if (replicas_.Find(name).ok()) {
    return AlreadyExists(name + " already names a replica on this node; choose another name");
  }
  Env* env = Env::Posix();
  if (!env->Exists(disk)) {
    if (create_size == 0) {
      return NotFound("disk " + disk + " does not exist; give create_size to create it");
    }
    ASSIGN_OR_RETURN(auto f, env->OpenFile(disk, OpenMode::kCreate));
    RETURN_IF_ERROR(f->Truncate(create_size));
    RETURN_IF_ERROR(f->Sync());
  }
  uint64_t size;
  {
    ASSIGN_OR_RETURN(auto f, env->OpenFile(disk, OpenMode::kReadWrite));
    ASSIGN_OR_RETURN(size, f->Size());
  }
  if (size == 0 || size % 4096) {
    return InvalidArgument("disk " + disk + " is " + std::to_string(size) +
                           " bytes; a volume is a positive multiple of 4096 bytes");
  }
  const std::string dir = JoinPath(JoinPath(config_.data_dir, "volumes"), name);
  RETURN_IF_ERROR(env->CreateDir(dir));
  journal::CreateParams p;
  p.size = size;
  p.pending_log = true;
  auto log = journal::Replica::Create(JoinPath(dir, "log"), p);
  if (!log.ok()) return log.status();
  log->reset();
  Volume v;
  v.name = name;
  v.disk = disk;
  v.capture = capture;
  v.scan_interval_ms = scan_interval_ms;
  RETURN_IF_ERROR(StoreVolume(v));
  RETURN_IF_ERROR(OpenVolume(name));
  spdlog::info("volume {} added: disk {} ({} bytes)", name, disk, size);
  ASSIGN_OR_RETURN(auto added, FindVolume(name));
  return VolumeJson(*added, SystemClock::Default()->NowNanos());
}

Status Node::RemoveVolume(const std::string& name) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  if (v->protect && v->link_state != "stopped") {
    return FailedPrecondition("volume " + name + " is protected; stop its link first");
  }
  if (v->sender) v->sender->Stop();
  {
    std::lock_guard l(mu_);
    volumes_.erase(name);
  }
  const std::string dir = JoinPath(JoinPath(config_.data_dir, "volumes"), name);
  // The pending log's files go; the disk itself stays (a promoted volume's may be in dir).
  // volume.json goes first: a directory without it is no volume.
  Env* env = Env::Posix();
  RETURN_IF_ERROR(env->RemoveFile(JoinPath(dir, "volume.json")));
  RETURN_IF_ERROR(env->SyncDir(dir));
  ASSIGN_OR_RETURN(auto entries, env->ListDir(dir));
  std::error_code ec;
  for (const std::string& entry : entries) {
    const std::string path = JoinPath(dir, entry);
    if (path == v->disk) continue;
    std::filesystem::remove_all(path, ec);
    if (ec) return IoError("removing " + path + ": " + ec.message());
  }
  std::filesystem::remove(dir, ec);  // fails, as it should, when the disk is in it
  return Status::Ok();
}

std::shared_ptr<Node::Volume> Node::FindVolumeByAlias(const std::string& name) {
  std::lock_guard l(mu_);
  for (const auto& [n, v] : volumes_) {
    if (std::find(v->aliases.begin(), v->aliases.end(), name) != v->aliases.end()) return v;
  }
  return nullptr;
}

Result<json> Node::Protect(const std::string& name, const ProtectParams& p) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  std::string host;
  uint16_t port;
  RETURN_IF_ERROR(SplitHostPort(p.target, &host, &port));
  if (p.marker_interval_ms < 1000) {
    return InvalidArgument("marker_interval_ms " + std::to_string(p.marker_interval_ms) +
                           " is below the minimum of 1000");
  }
  if (p.mode != "async" && p.mode != "sync") {
    return InvalidArgument("mode '" + p.mode + "': use async or sync");
  }
  if (link::Codec codec; !link::ParseCodec(p.compression, &codec)) {
    return InvalidArgument("compression '" + p.compression + "': use zstd (WAN), lz4 or none (a fast LAN)");
  }
  if (p.sync_timeout_ms < 1 || p.hook_timeout_ms < 1) {
    return InvalidArgument("sync_timeout_ms and hook_timeout_ms must be positive");
  }
  if (p.pending_cap_bytes < (64ull << 20)) {
    return InvalidArgument("pending_cap_bytes " + std::to_string(p.pending_cap_bytes) +
                           " is below the minimum of 64 MiB");
  }
  if (p.retention_seconds < 1 || p.retention_seconds > kMaxRetentionSeconds) {
    return InvalidArgument("retention_seconds " + std::to_string(p.retention_seconds) +
                           " is out of range: give 1 to " + std::to_string(kMaxRetentionSeconds) +
                           " (10 years)");
  }
  if (p.app_interval_ms != 0 && p.app_interval_ms < 1000) {
    return InvalidArgument("app_interval_ms " + std::to_string(p.app_interval_ms) +
                           " is below the minimum of 1000 (0: only on request)");
  }
  std::lock_guard l(mu_);
  if (v->protect && v->link_state != "stopped") {
    return FailedPrecondition("volume " + name + " is already protected toward " + v->params.target +
                              "; stop that link first");
  }
  v->protect = true;
  v->params = p;
  v->link_state = "running";
  RETURN_IF_ERROR(StoreVolume(*v));
  RETURN_IF_ERROR(StartLink(*v));
  spdlog::info("volume {} protected toward {}", name, p.target);
  return VolumeJson(*v, SystemClock::Default()->NowNanos());
}

Status Node::LinkAction(const std::string& name, const std::string& action) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  std::lock_guard l(mu_);
  if (!v->protect || !v->sender) {
    if (action == "resume" && v->protect) {
      v->link_state = "running";
      RETURN_IF_ERROR(StoreVolume(*v));
      return StartLink(*v);
    }
    return FailedPrecondition("volume " + name + " has no running link; protect it first");
  }
  if (action == "pause") {
    v->sender->Pause();
    v->link_state = "paused";
  } else if (action == "resume") {
    v->sender->Resume();
    v->link_state = "running";
  } else if (action == "stop") {
    if (v->splitter) v->splitter->SetAckWaiter(nullptr);
    v->sender->Stop();
    v->acked_at_stop = v->sender->status().acked_seq;
    v->sender.reset();
    v->link_state = "stopped";
  } else {
    return InvalidArgument("link action '" + action + "': use pause, resume or stop");
  }
  return StoreVolume(*v);
}

Status Node::SetLinkRate(const std::string& name, uint64_t bytes_per_second) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  std::lock_guard l(mu_);
  v->params.bytes_per_second = bytes_per_second;
  if (v->sender) v->sender->SetRate(bytes_per_second);
  return v->protect ? StoreVolume(*v) : Status::Ok();
}

Result<json> Node::VerifyLink(const std::string& name, const std::string& id) {
  if (id.empty() || id.size() > 200) return InvalidArgument("field 'id': give a name for the verify (1 to 200 bytes)");
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  std::shared_ptr<link::LinkSender> sender;
  {
    std::lock_guard l(mu_);
    if (!v->protect || !v->sender) {
      return FailedPrecondition("volume " + name + " has no running link; protect it (or resume its link) first");
    }
    sender = v->sender;
  }
  ASSIGN_OR_RETURN(link::VerifyStatus st, sender->Verify(id));
  return VerifyJson(st);
}

Status Node::CancelVerify(const std::string& name) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  std::lock_guard l(mu_);
  if (v->sender) v->sender->CancelVerify();
  return Status::Ok();
}

void Node::SetNodeRate(uint64_t bytes_per_second) { node_throttle_.SetRate(bytes_per_second); }

Result<json> Node::RunScan(const std::shared_ptr<Volume>& v) {
  if (!v->scan) return FailedPrecondition("volume " + v->name + " is not scan-captured");
  std::lock_guard sl(v->scan_mu);
  // A new target needs everything again: forget the map, so this cycle sends every chunk.
  const bool full = v->reset_pending.exchange(false);
  if (full) {
    Status rm = Env::Posix()->RemoveFile(v->scan->map_path());
    if (!rm.ok() && rm.code() != Code::kNotFound && Env::Posix()->Exists(v->scan->map_path())) {
      v->reset_pending = true;
      return rm;
    }
  }
  ProtectParams p;
  {
    std::lock_guard l(mu_);
    p = v->params;
    v->last_scan_ns = SystemClock::Default()->NowNanos();
  }
  const auto kind = p.freeze_command.empty() ? journal::MarkerKind::kCrashConsistent
                                             : journal::MarkerKind::kAppConsistent;
  auto r = v->scan->RunCycle(kind, full ? "scan (full)" : "scan");
  if (!r.ok()) {
    if (full) v->reset_pending = true;
    events_.Add("warning", v->name, "scan cycle failed: " + r.status().ToString() +
                                        "; the next cycle sends what this one did not");
    return r.status();
  }
  if (full) v->full_cycle_marker = r->marker_seq;
  json j = {{"volume", v->name}, {"seq", r->marker_seq},
            {"kind", std::string(journal::MarkerKindName(kind))},
            {"bytes_read", r->bytes_read}, {"chunks", r->chunks},
            {"changed_chunks", r->changed_chunks}, {"bytes_changed", r->bytes_changed},
            {"full", full}, {"seconds", static_cast<double>(r->duration_ns) / kNanosPerSecond}};
  std::lock_guard l(mu_);
  v->last_scan = j;
  return j;
}

Result<json> Node::Scan(const std::string& name) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  return RunScan(v);
}

json Node::Events(uint64_t after) {
  json out = json::array();
  for (const Event& e : events_.Since(after)) {
    out.push_back({{"id", e.id}, {"time", FormatTime(e.time_ns)}, {"severity", e.severity},
                   {"volume", e.volume}, {"message", e.message}});
  }
  return json{{"events", out}};
}

void Node::MarkerLoop() {
  std::unique_lock l(mu_);
  while (!stopping_) {
    cv_.wait_for(l, std::chrono::milliseconds(100));
    if (stopping_) return;
    const int64_t now = SystemClock::Default()->NowNanos();
    std::vector<Barrier> expired = ExpireBarriers(now);
    std::vector<std::shared_ptr<Volume>> app_due, drop_due, scan_due;
    for (auto& [name, v] : volumes_) {
      if (v->sender) {
        link::LinkStatus st = v->sender->status();
        if (st.state != v->last_state) {
          if (st.state == "blocked") {
            events_.Add("error", name, "replication is blocked: " + st.last_error +
                                           "; fix the cause, then resume the link");
          } else if (v->last_state == "blocked") {
            events_.Add("info", name, "replication resumed (" + st.state + ")");
          }
          v->last_state = st.state;
        }
        if (st.verify.state == "done" && st.verify.id != v->verify_reported) {
          v->verify_reported = st.verify.id;
          const link::VerifyStatus& r = st.verify;
          if (r.differing_bytes > 0) {
            events_.Add("warning", name,
                        "verify " + r.id + ": " + std::to_string(r.differing_bytes) +
                            " bytes differed from the target and were resynced (consistent from seq " +
                            std::to_string(r.consistent_from) + ")");
          } else {
            events_.Add("info", name,
                        "verify " + r.id + (r.cancelled ? ": cancelled after " : ": the target equals the source (") +
                            std::to_string(r.compared_bytes) + " bytes compared" + (r.cancelled ? "" : ")"));
          }
        }
        if (v->params.mode == "sync" && !v->sync_active->load() && st.state == "replicating" &&
            st.acked_seq >= st.log_last_seq) {
          *v->sync_active = true;
          events_.Add("info", name, "the link caught up: replication is synchronous again");
        }
      }
      if (v->protect && !v->dropping && v->splitter) {
        const uint64_t held = v->log->Stats().journal_bytes;
        if (held > v->params.pending_cap_bytes) {
          v->dropping = true;
          drop_due.push_back(v);
        }
      }
      if (v->protect && v->link_state == "running" && v->params.app_interval_ms > 0 && v->splitter &&
          !v->app_running && now - v->last_app_ns >= v->params.app_interval_ms * 1'000'000) {
        v->last_app_ns = now;
        v->app_running = true;
        app_due.push_back(v);
      }
      if (v->scan) {
        if (v->protect && v->link_state == "running" && !v->scan_due_running &&
            (v->reset_pending.load() || now - v->last_scan_ns >= v->scan_interval_ms * 1'000'000)) {
          v->scan_due_running = true;
          scan_due.push_back(v);
        }
        continue;  // cycles make the markers; no splitter, no cap
      }
      if (now - v->sample_ns >= kNanosPerSecond) {
        const uint64_t b = v->splitter->bytes_changed();
        if (v->sample_ns) {
          v->churn = static_cast<double>(b - v->sample_bytes) * kNanosPerSecond /
                     static_cast<double>(now - v->sample_ns);
        }
        v->sample_ns = now;
        v->sample_bytes = b;
      }
      if (!v->protect || v->link_state != "running") continue;
      if (now - v->last_marker_ns < v->params.marker_interval_ms * 1'000'000) continue;
      v->last_marker_ns = now;
      auto m = v->splitter->Mark(journal::MarkerKind::kCrashConsistent, "");
      if (!m.ok()) events_.Add("error", name, "crash-consistent marker failed: " + m.status().ToString());
    }
    // Hooks may take seconds: run them without the node's lock.
    l.unlock();
    for (auto& b : expired) EndBarrier(b);
    for (auto& v : drop_due) {
      const uint64_t acked = v->sender ? v->sender->status().acked_seq : 0;
      auto before = capture::DropToDirtyMap(*v->splitter, *v->log, *v->dirty, acked);
      if (before.ok()) {
        events_.Add("warning", v->name,
                    "the pending log reached " + std::to_string(*before >> 20) + " MiB, over its cap of " +
                        std::to_string(v->params.pending_cap_bytes >> 20) +
                        " MiB: its records were dropped and the changed blocks (" +
                        std::to_string(v->dirty->DirtyBytes() >> 20) +
                        " MiB) will be resynced when the target is reachable");
      } else {
        events_.Add("error", v->name, "dropping the pending log to the changed-block map failed: " +
                                          before.status().ToString());
      }
      std::lock_guard g(mu_);
      v->dropping = false;
    }
    for (auto& v : scan_due) {
      (void)RunScan(v);
      std::lock_guard g(mu_);
      v->scan_due_running = false;
    }
    for (auto& v : app_due) {
      (void)AppConsistentMarker(v, "scheduled");
      std::lock_guard g(mu_);
      v->app_running = false;
    }
    l.lock();
  }
}

}  // namespace ferry::node
