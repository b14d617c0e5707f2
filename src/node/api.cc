#include "node/api.h"

#include <httplib.h>

#include "node/scripts.h"

namespace ferry::node {

namespace {

int HttpStatus(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kOutOfRange: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return 409;
    case Code::kResourceExhausted: return 507;
    case Code::kAborted: return 503;
    default: return 500;
  }
}

void Reply(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void ReplyError(httplib::Response& res, const Status& s) {
  Reply(res, json{{"error", {{"code", std::string(CodeName(s.code()))}, {"message", std::string(s.message())}}}},
        HttpStatus(s.code()));
}

void ReplyResult(httplib::Response& res, const Result<json>& r, int ok_status = 200) {
  if (r.ok()) {
    Reply(res, *r, ok_status);
  } else {
    ReplyError(res, r.status());
  }
}

void ReplyStatus(httplib::Response& res, const Status& s) {
  if (s.ok()) {
    Reply(res, json{{"ok", true}});
  } else {
    ReplyError(res, s);
  }
}

// The request's JSON body ({} when empty); kInvalidArgument when it does not parse.
Result<json> Body(const httplib::Request& req) {
  if (req.body.empty()) return json::object();
  try {
    json j = json::parse(req.body);
    if (!j.is_object()) return InvalidArgument("the request body must be a JSON object");
    return j;
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("the request body is not JSON: ") + e.what());
  }
}

// Reads an optional field of a type, naming it when it has the wrong type.
template <typename T>
Result<T> Field(const json& j, const char* name, T fallback) {
  if (!j.contains(name) || j[name].is_null()) return fallback;
  try {
    return j[name].get<T>();
  } catch (const std::exception&) {
    return InvalidArgument(std::string("field '") + name + "' has the wrong type");
  }
}

}  // namespace

Api::Api(Node* node, std::string token) : node_(node), token_(std::move(token)) {
  Routes();
}

Api::~Api() { Stop(); }

void Api::Stop() { listener_.Stop(); }

Status Api::Listen(const std::string& address) { return listener_.Listen(address, "the command interface"); }

void Api::Routes() {
  auto& s = listener_.server();
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (token_.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + token_) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    Reply(res, json{{"error", {{"code", "Unauthenticated"},
                               {"message", "send Authorization: Bearer TOKEN (api_auth.token of the node's config)"}}}},
          401);
    return httplib::Server::HandlerResponse::Handled;
  });
  s.Get("/v1/status", [this](const httplib::Request&, httplib::Response& res) {
    Reply(res, node_->StatusJson());
  });
  // Recovery-plan scripts (node/scripts.h).
  s.Post("/v1/run", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, RunScript(node_->config().data_dir, *b));
  });
  s.Post("/v1/run/check", [](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, CheckScript(*b));
  });
  s.Post("/v1/volumes", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto name = Field<std::string>(*b, "name", "");
    auto disk = Field<std::string>(*b, "disk", "");
    auto size = Field<uint64_t>(*b, "create_size", 0);
    auto capture = Field<std::string>(*b, "capture", "splitter");
    auto interval = Field<int64_t>(*b, "scan_interval_ms", 60000);
    for (const Status& st : {name.status(), disk.status(), size.status(), capture.status(), interval.status()}) {
      if (!st.ok()) return ReplyError(res, st);
    }
    ReplyResult(res, node_->AddVolume(*name, *disk, *size, *capture, *interval), 201);
  });
  s.Delete(R"(/v1/volumes/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyStatus(res, node_->RemoveVolume(req.matches[1]));
  });
  s.Post(R"(/v1/volumes/([^/]+)/protect)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ProtectParams p;
    Status bad;
    auto get_str = [&](const char* k, std::string* out) {
      auto r = Field<std::string>(*b, k, *out);
      if (r.ok()) *out = *r; else if (bad.ok()) bad = r.status();
    };
    auto get_i64 = [&](const char* k, int64_t* out) {
      auto r = Field<int64_t>(*b, k, *out);
      if (r.ok()) *out = *r; else if (bad.ok()) bad = r.status();
    };
    auto rate = Field<uint64_t>(*b, "bytes_per_second", 0);
    if (!rate.ok()) bad = rate.status();
    auto cap = Field<uint64_t>(*b, "pending_cap_bytes", p.pending_cap_bytes);
    if (!cap.ok() && bad.ok()) bad = cap.status();
    get_str("target", &p.target);
    get_str("mode", &p.mode);
    get_str("compression", &p.compression);
    get_str("freeze_command", &p.freeze_command);
    get_str("thaw_command", &p.thaw_command);
    get_i64("marker_interval_ms", &p.marker_interval_ms);
    get_i64("sync_timeout_ms", &p.sync_timeout_ms);
    get_i64("hook_timeout_ms", &p.hook_timeout_ms);
    get_i64("app_interval_ms", &p.app_interval_ms);
    get_i64("retention_seconds", &p.retention_seconds);
    if (!bad.ok()) return ReplyError(res, bad);
    if (p.target.empty()) return ReplyError(res, InvalidArgument("field 'target' (HOST:PORT of the target node's link listener) is required"));
    p.bytes_per_second = *rate;
    p.pending_cap_bytes = *cap;
    ReplyResult(res, node_->Protect(req.matches[1], p));
  });
  s.Post(R"(/v1/volumes/([^/]+)/link/(pause|resume|stop))",
         [this](const httplib::Request& req, httplib::Response& res) {
           ReplyStatus(res, node_->LinkAction(req.matches[1], req.matches[2]));
         });
  s.Post(R"(/v1/volumes/([^/]+)/link/resync)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto id = Field<std::string>(*b, "id", "");
    if (!id.ok()) return ReplyError(res, id.status());
    ReplyResult(res, node_->VerifyLink(req.matches[1], *id), 202);
  });
  s.Delete(R"(/v1/volumes/([^/]+)/link/resync)", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyStatus(res, node_->CancelVerify(req.matches[1]));
  });
  s.Put(R"(/v1/volumes/([^/]+)/link/rate)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto rate = Field<uint64_t>(*b, "bytes_per_second", 0);
    if (!rate.ok()) return ReplyError(res, rate.status());
    ReplyStatus(res, node_->SetLinkRate(req.matches[1], *rate));
  });
  s.Put("/v1/throttle", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto rate = Field<uint64_t>(*b, "bytes_per_second", 0);
    if (!rate.ok()) return ReplyError(res, rate.status());
    node_->SetNodeRate(*rate);
    Reply(res, json{{"ok", true}});
  });
  s.Post(R"(/v1/volumes/([^/]+)/scan)", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyResult(res, node_->Scan(req.matches[1]), 201);
  });
  s.Post(R"(/v1/volumes/([^/]+)/markers)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto kind = Field<std::string>(*b, "kind", "crash-consistent");
    auto label = Field<std::string>(*b, "label", "");
    if (!kind.ok()) return ReplyError(res, kind.status());
    if (!label.ok()) return ReplyError(res, label.status());
    ReplyResult(res, node_->Mark(req.matches[1], *kind, *label), 201);
  });
  s.Post(R"(/v1/volumes/([^/]+)/fence)", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyResult(res, node_->Fence(req.matches[1]));
  });
  s.Post(R"(/v1/volumes/([^/]+)/unfence)", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyStatus(res, node_->Unfence(req.matches[1]));
  });
  s.Get("/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
    uint64_t after = 0;
    try {
      if (req.has_param("after")) after = std::stoull(req.get_param_value("after"));
    } catch (const std::exception&) {
      return ReplyError(res, InvalidArgument("after must be an event id"));
    }
    Reply(res, node_->Events(after));
  });
  s.Post("/v1/barriers", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto volumes = Field<std::vector<std::string>>(*b, "volumes", {});
    auto timeout = Field<int64_t>(*b, "timeout_ms", 5000);
    auto app = Field<bool>(*b, "app_consistent", false);
    if (!volumes.ok()) return ReplyError(res, volumes.status());
    if (!timeout.ok()) return ReplyError(res, timeout.status());
    if (!app.ok()) return ReplyError(res, app.status());
    ReplyResult(res, node_->BarrierHold(*volumes, *timeout, *app), 201);
  });
  s.Post(R"(/v1/barriers/([^/]+)/mark)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto mid = Field<std::string>(*b, "marker_id", "");
    auto gid = Field<std::string>(*b, "group_id", "");
    auto label = Field<std::string>(*b, "label", "");
    if (!mid.ok()) return ReplyError(res, mid.status());
    if (!gid.ok()) return ReplyError(res, gid.status());
    if (!label.ok()) return ReplyError(res, label.status());
    ReplyResult(res, node_->BarrierMark(req.matches[1], *mid, *gid, *label));
  });
  s.Post(R"(/v1/barriers/([^/]+)/release)", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyStatus(res, node_->BarrierRelease(req.matches[1]));
  });
  s.Post("/v1/replicas", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto name = Field<std::string>(*b, "name", "");
    auto vid = Field<std::string>(*b, "volume_id", "");
    auto hid = Field<std::string>(*b, "history_id", "");
    auto size = Field<uint64_t>(*b, "size", 0);
    auto bs = Field<uint32_t>(*b, "block_size", 4096);
    auto first = Field<uint64_t>(*b, "first_seq", 0);
    auto seed = Field<std::string>(*b, "seed", "");
    auto seed_volume = Field<std::string>(*b, "seed_volume", "");
    for (const Status& st : {name.status(), vid.status(), hid.status(), size.status(), bs.status(),
                             first.status(), seed.status(), seed_volume.status()}) {
      if (!st.ok()) return ReplyError(res, st);
    }
    ReplyResult(res, node_->PrepareReplica(*name, *vid, *hid, *size, *bs, *first, *seed, *seed_volume), 201);
  });
  s.Delete(R"(/v1/replicas/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    bool force = false;
    if (req.has_param("force")) {
      const std::string f = req.get_param_value("force");
      if (f != "true" && f != "false") return ReplyError(res, InvalidArgument("force must be true or false"));
      force = f == "true";
    }
    ReplyStatus(res, node_->DeleteReplica(req.matches[1], force));
  });
  s.Post(R"(/v1/replicas/([^/]+)/promote)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto volume = Field<std::string>(*b, "volume", "");
    auto disk = Field<std::string>(*b, "disk", "");
    if (!volume.ok()) return ReplyError(res, volume.status());
    if (!disk.ok()) return ReplyError(res, disk.status());
    if (volume->empty()) return ReplyError(res, InvalidArgument("field 'volume' (the new capture volume's name) is required"));
    ReplyResult(res, node_->Promote(req.matches[1], *volume, *disk), 201);
  });
  s.Post(R"(/v1/replicas/([^/]+)/retention)", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyResult(res, node_->ApplyRetention(req.matches[1]));
  });
  s.Get(R"(/v1/replicas/([^/]+)/points)", [this](const httplib::Request& req, httplib::Response& res) {
    size_t limit = 100;
    uint64_t before = 0;
    try {
      if (req.has_param("limit")) limit = std::stoul(req.get_param_value("limit"));
      if (req.has_param("before")) before = std::stoull(req.get_param_value("before"));
    } catch (const std::exception&) {
      return ReplyError(res, InvalidArgument("limit and before must be numbers"));
    }
    ReplyResult(res, node_->ListPoints(req.matches[1], req.get_param_value("kind"), limit, before));
  });
  s.Post(R"(/v1/replicas/([^/]+)/views)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto point = Field<std::string>(*b, "point", "latest");
    if (!point.ok()) return ReplyError(res, point.status());
    ReplyResult(res, node_->OpenView(req.matches[1], *point), 201);
  });
  s.Post(R"(/v1/replicas/([^/]+)/overlays)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto name = Field<std::string>(*b, "name", "");
    auto point = Field<std::string>(*b, "point", "latest");
    if (!name.ok()) return ReplyError(res, name.status());
    if (!point.ok()) return ReplyError(res, point.status());
    ReplyResult(res, node_->CreateOverlay(req.matches[1], *name, *point), 201);
  });
  s.Delete(R"(/v1/replicas/([^/]+)/overlays/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyStatus(res, node_->DiscardOverlay(req.matches[1], req.matches[2]));
  });
  s.Post(R"(/v1/replicas/([^/]+)/overlays/([^/]+)/commit)",
         [this](const httplib::Request& req, httplib::Response& res) {
           ReplyStatus(res, node_->CommitOverlay(req.matches[1], req.matches[2]));
         });
  s.Get("/v1/machines", [this](const httplib::Request&, httplib::Response& res) {
    Reply(res, json{{"launcher", node_->machines().kind()}, {"machines", node_->machines().List()}});
  });
  s.Post("/v1/machines", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, node_->machines().Launch(*b), 201);
  });
  s.Post("/v1/machines/adopt", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, node_->machines().Adopt(*b), 201);
  });
  s.Get(R"(/v1/machines/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyResult(res, node_->machines().Get(req.matches[1]));
  });
  s.Delete(R"(/v1/machines/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    ReplyStatus(res, node_->machines().Remove(req.matches[1]));
  });
  s.Post(R"(/v1/machines/([^/]+)/stop)", [this](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto graceful = Field<bool>(*b, "graceful", true);
    auto timeout = Field<int64_t>(*b, "timeout_ms", 60000);
    if (!graceful.ok()) return ReplyError(res, graceful.status());
    if (!timeout.ok()) return ReplyError(res, timeout.status());
    if (*timeout < 0 || *timeout > 3600000) {
      return ReplyError(res, InvalidArgument("field 'timeout_ms' must be 0 to 3600000"));
    }
    ReplyResult(res, node_->machines().Stop(req.matches[1], *graceful, *timeout), 202);
  });
  s.Get(R"(/v1/machines/([^/]+)/console)", [this](const httplib::Request& req, httplib::Response& res) {
    int64_t offset = 0, limit = 65536;
    try {
      if (req.has_param("offset")) offset = std::stoll(req.get_param_value("offset"));
      if (req.has_param("limit")) limit = std::stoll(req.get_param_value("limit"));
    } catch (const std::exception&) {
      return ReplyError(res, InvalidArgument("offset and limit must be numbers"));
    }
    if (offset < 0 || limit < 1 || limit > (1 << 20)) {
      return ReplyError(res, InvalidArgument("offset must be >= 0 and limit 1 to 1048576"));
    }
    ReplyResult(res, node_->machines().Console(req.matches[1], offset, limit));
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const bool no_route = res.status == 404;
    Reply(res, json{{"error", {{"code", no_route ? "NotFound" : "InvalidArgument"},
                               {"message", no_route ? "no route " + req.method + " " + req.path +
                                                          "; see docs/protocols/node-api.md"
                                                    : "malformed HTTP request (" + std::to_string(res.status) +
                                                          "); a POST needs a body or Content-Length: 0"}}}},
          res.status);
  });
}

}  // namespace ferry::node
