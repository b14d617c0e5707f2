#include "api/server.h"

#include <httplib.h>

#include "control/errors.h"
#include "control/fields.h"

namespace ferry::api {

using control::Describe;
using nlohmann::json;

namespace {

constexpr size_t kMaxBody = 1 << 20;

int HttpStatus(const control::ErrorParts& e, Code code) {
  if (e.code == "InvalidState") return 409;
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kOutOfRange: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return 409;
    case Code::kUnavailable: return 503;
    case Code::kAborted: return 503;
    default: return 500;
  }
}

void Reply(httplib::Response& res, const json& body, int status) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void ReplyError(httplib::Response& res, const std::string& code, const std::string& message,
                const std::string& action, int status) {
  Reply(res, json{{"error", {{"code", code}, {"message", message}, {"action", action}}}}, status);
}

void ReplyError(httplib::Response& res, const Status& s) {
  control::ErrorParts e = Describe(s);
  int status = HttpStatus(e, s.code());
  std::string code = e.code;
  // The API's codes: the store's and nodes' internal codes map onto the documented ones.
  if (status == 500) code = "Internal";
  if (status == 503) code = "Unavailable";
  if (status == 400) code = "InvalidArgument";
  ReplyError(res, code, e.message, e.action, status);
}

void ReplyResult(httplib::Response& res, const Result<json>& r, int ok_status) {
  if (r.ok()) {
    Reply(res, *r, ok_status);
  } else {
    ReplyError(res, r.status());
  }
}

Result<json> Body(const httplib::Request& req) {
  if (req.body.empty()) return json::object();
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded()) return InvalidArgument("the request body is not valid JSON");
  if (!j.is_object()) return InvalidArgument("the request body must be a JSON object");
  return j;
}

std::string Param(const httplib::Request& req, const char* name) {
  return req.has_param(name) ? req.get_param_value(name) : std::string();
}

Result<control::Page> PageOf(const httplib::Request& req) {
  return control::ParsePage(Param(req, "limit"), Param(req, "page_token"));
}

// Refuses query parameters the route does not take (typos would pass silently).
Status CheckParams(const httplib::Request& req, std::initializer_list<const char*> allowed) {
  for (const auto& [k, v] : req.params) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || k == a;
    if (!ok) return InvalidArgument("unknown query parameter '" + k + "'");
  }
  return Status::Ok();
}

}  // namespace

ApiServer::ApiServer(control::Controller* ctl, std::string token) : ctl_(ctl), token_(std::move(token)) {
  Routes();
}

ApiServer::~ApiServer() { Stop(); }

void ApiServer::Stop() { listener_.Stop(); }

Status ApiServer::Listen(const std::string& address) { return listener_.Listen(address, "the API"); }

void ApiServer::Routes() {
  auto& s = listener_.server();
  s.set_payload_max_length(kMaxBody);
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    ReplyError(res, "Internal", "the server failed on " + req.method + " " + req.path + ": " + what,
               "report this with the server's log", 500);
  });
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/api/v1/health" || req.path == "/api/v1/nodes/register" ||
        (req.path.rfind("/api/v1/nodes/", 0) == 0 && req.path.size() > 10 &&
         req.path.compare(req.path.size() - 10, 10, "/heartbeat") == 0)) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (req.get_header_value("Authorization") == "Bearer " + token_) return httplib::Server::HandlerResponse::Unhandled;
    ReplyError(res, "Unauthenticated", "missing or wrong API token",
               "send Authorization: Bearer TOKEN (ferry up writes the token to the CLI's configuration file)", 401);
    return httplib::Server::HandlerResponse::Handled;
  });
  // Answers the server made without a handler (no route, a body over the limit): same shape.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      ReplyError(res, "PayloadTooLarge", "the request body is larger than 1 MiB", "send a smaller body", 413);
    } else if (res.status == 404) {
      ReplyError(res, "NotFound", "no route " + req.method + " " + req.path, "see docs/protocols/server-api.md", 404);
    } else {
      ReplyError(res, res.status >= 500 ? "Internal" : "InvalidArgument", "the request could not be served", "",
                 res.status);
    }
  });

  s.Get("/api/v1/health", [](const httplib::Request&, httplib::Response& res) {
    Reply(res, json{{"ok", true}, {"version", "0.1.0"}}, 200);
  });

  // ---- inventory
  auto& inv = ctl_->inventory();
  auto list = [&s](const std::string& path, std::function<Result<json>(const control::Page&)> fn) {
    s.Get(path, [fn](const httplib::Request& req, httplib::Response& res) {
      if (Status st = CheckParams(req, {"limit", "page_token"}); !st.ok()) return ReplyError(res, st);
      auto page = PageOf(req);
      if (!page.ok()) return ReplyError(res, page.status());
      ReplyResult(res, fn(*page), 200);
    });
  };
  auto create = [&s](const std::string& path, std::function<Result<json>(const json&)> fn, int status) {
    s.Post(path, [fn, status](const httplib::Request& req, httplib::Response& res) {
      auto b = Body(req);
      if (!b.ok()) return ReplyError(res, b.status());
      ReplyResult(res, fn(*b), status);
    });
  };
  auto get = [&s](const std::string& path, std::function<Result<json>(const std::string&)> fn) {
    s.Get(path, [fn](const httplib::Request& req, httplib::Response& res) { ReplyResult(res, fn(req.matches[1]), 200); });
  };
  list("/api/v1/sites", [&inv](const control::Page& p) { return inv.ListSites(p); });
  create("/api/v1/sites", [&inv](const json& b) { return inv.CreateSite(b); }, 201);
  get(R"(/api/v1/sites/([^/]+))", [&inv](const std::string& id) { return inv.GetSite(id); });
  create("/api/v1/nodes/enrollments", [&inv](const json& b) { return inv.CreateEnrollment(b); }, 201);
  s.Post("/api/v1/nodes/register", [&inv](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto r = inv.RegisterNode(*b);
    if (!r.ok() && r.status().code() == Code::kFailedPrecondition) {
      auto e = Describe(r.status());
      return ReplyError(res, "Unauthenticated", e.message, e.action, 401);
    }
    ReplyResult(res, r, 201);
  });
  s.Post(R"(/api/v1/nodes/([^/]+)/heartbeat)", [&inv](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    std::string auth = req.get_header_value("Authorization");
    std::string secret = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : "";
    Status st = inv.Heartbeat(req.matches[1], secret, *b);
    if (st.code() == Code::kFailedPrecondition || (st.code() == Code::kNotFound && secret.empty())) {
      return ReplyError(res, "Unauthenticated", "missing or wrong node secret",
                        "the node re-registers with a fresh enrollment token", 401);
    }
    if (!st.ok()) return ReplyError(res, st);
    Reply(res, json{{"ok", true}}, 200);
  });
  list("/api/v1/nodes", [&inv](const control::Page& p) { return inv.ListNodes(p); });
  get(R"(/api/v1/nodes/([^/]+))", [&inv](const std::string& id) { return inv.GetNode(id); });
  list("/api/v1/policies", [&inv](const control::Page& p) { return inv.ListPolicies(p); });
  create("/api/v1/policies", [&inv](const json& b) { return inv.CreatePolicy(b); }, 201);
  get(R"(/api/v1/policies/([^/]+))", [&inv](const std::string& id) { return inv.GetPolicy(id); });
  list("/api/v1/machines", [&inv](const control::Page& p) { return inv.ListMachines(p); });
  create("/api/v1/machines", [&inv](const json& b) { return inv.CreateMachine(b); }, 201);
  get(R"(/api/v1/machines/([^/]+))", [&inv](const std::string& id) { return inv.GetMachine(id); });

  // ---- items
  auto& items = ctl_->items();
  s.Get("/api/v1/items", [&items](const httplib::Request& req, httplib::Response& res) {
    if (Status st = CheckParams(req, {"limit", "page_token", "state", "site"}); !st.ok()) return ReplyError(res, st);
    auto page = PageOf(req);
    if (!page.ok()) return ReplyError(res, page.status());
    ReplyResult(res, items.List(Param(req, "state"), Param(req, "site"), *page), 200);
  });
  create("/api/v1/items", [&items](const json& b) { return items.Enable(b); }, 202);
  get(R"(/api/v1/items/([^/]+))", [&items](const std::string& id) { return items.Get(id); });
  s.Patch(R"(/api/v1/items/([^/]+))", [&items](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, items.Update(req.matches[1], *b), 202);
  });
  s.Delete(R"(/api/v1/items/([^/]+))", [&items](const httplib::Request& req, httplib::Response& res) {
    ReplyResult(res, items.Disable(req.matches[1]), 202);
  });
  s.Get(R"(/api/v1/items/([^/]+)/recovery-points)", [&items](const httplib::Request& req, httplib::Response& res) {
    if (Status st = CheckParams(req, {"limit", "page_token", "kind", "before", "after"}); !st.ok()) {
      return ReplyError(res, st);
    }
    auto page = PageOf(req);
    if (!page.ok()) return ReplyError(res, page.status());
    std::string kind = Param(req, "kind");
    if (kind == "crash" || kind == "app" || kind == "group") kind += "-consistent";
    ReplyResult(res, items.RecoveryPoints(req.matches[1], kind, Param(req, "before"), Param(req, "after"), *page), 200);
  });
  s.Get(R"(/api/v1/items/([^/]+)/console)", [&items](const httplib::Request& req, httplib::Response& res) {
    int64_t offset = 0, limit = 65536;
    try {
      if (req.has_param("offset")) offset = std::stoll(req.get_param_value("offset"));
      if (req.has_param("limit")) limit = std::stoll(req.get_param_value("limit"));
    } catch (const std::exception&) {
      return ReplyError(res, InvalidArgument("offset and limit must be integers"));
    }
    const std::string which = Param(req, "machine");
    if (!which.empty() && which != "test" && which != "running") {
      return ReplyError(res, InvalidArgument("machine must be 'running' (default) or 'test'"));
    }
    ReplyResult(res, items.Console(req.matches[1], which == "test", offset, limit), 200);
  });
  s.Post(R"(/api/v1/items/([^/]+)/([a-z-]+))", [&items](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, items.Operate(req.matches[1], req.matches[2], *b), 202);
  });

  // ---- recovery plans (docs/plans.md)
  auto& plans = ctl_->plans();
  list("/api/v1/plans", [&plans](const control::Page& p) { return plans.List(p); });
  create("/api/v1/plans", [&plans](const json& b) { return plans.Create(b); }, 201);
  get(R"(/api/v1/plans/([^/]+))", [&plans](const std::string& id) { return plans.Get(id); });
  get(R"(/api/v1/plans/([^/]+)/readiness)", [&plans](const std::string& id) { return plans.Readiness(id); });
  s.Put(R"(/api/v1/plans/([^/]+))", [&plans](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, plans.Replace(req.matches[1], *b), 200);
  });
  s.Delete(R"(/api/v1/plans/([^/]+))", [&plans](const httplib::Request& req, httplib::Response& res) {
    Status st = plans.Delete(req.matches[1]);
    if (!st.ok()) return ReplyError(res, st);
    Reply(res, json{{"ok", true}}, 200);
  });
  s.Post(R"(/api/v1/plans/([^/]+)/([a-z-]+))", [&plans](const httplib::Request& req, httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, plans.Operate(req.matches[1], req.matches[2], *b), 202);
  });

  // ---- consistency groups
  auto& groups = ctl_->groups();
  list("/api/v1/consistency-groups", [&groups](const control::Page& p) { return groups.List(p); });
  create("/api/v1/consistency-groups", [&groups](const json& b) { return groups.Create(b); }, 201);
  get(R"(/api/v1/consistency-groups/([^/]+))", [&groups](const std::string& id) { return groups.Get(id); });
  s.Delete(R"(/api/v1/consistency-groups/([^/]+))", [&groups](const httplib::Request& req, httplib::Response& res) {
    Status st = groups.Delete(req.matches[1]);
    if (!st.ok()) return ReplyError(res, st);
    Reply(res, json{{"ok", true}}, 200);
  });
  s.Post(R"(/api/v1/consistency-groups/([^/]+)/members)", [&groups](const httplib::Request& req,
                                                                   httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    ReplyResult(res, groups.AddMember(req.matches[1], *b), 200);
  });
  s.Delete(R"(/api/v1/consistency-groups/([^/]+)/members/([^/]+))",
           [&groups](const httplib::Request& req, httplib::Response& res) {
             ReplyResult(res, groups.RemoveMember(req.matches[1], req.matches[2]), 200);
           });

  // ---- jobs
  auto& jobs = ctl_->jobs();
  s.Get("/api/v1/jobs", [this, &jobs](const httplib::Request& req, httplib::Response& res) {
    if (Status st = CheckParams(req, {"limit", "page_token", "state", "item"}); !st.ok()) return ReplyError(res, st);
    auto page = PageOf(req);
    if (!page.ok()) return ReplyError(res, page.status());
    int64_t item = 0;
    if (std::string ref = Param(req, "item"); !ref.empty()) {
      auto id = ctl_->items().ItemId(ctl_->db(), ref);
      if (!id.ok()) return ReplyError(res, id.status());
      item = *id;
    }
    int64_t next = 0;
    auto r = jobs.List(item ? "item" : "", item, Param(req, "state"), page->limit, page->after_id, &next);
    if (!r.ok()) return ReplyError(res, r.status());
    Reply(res, control::PageJson(*r, next), 200);
  });
  auto job_id = [](const std::string& ref) -> Result<int64_t> {
    int64_t id = control::ParseId("job", ref);
    if (id == 0) return NotFound("no job '" + ref + "': job ids look like job-17");
    return id;
  };
  s.Get(R"(/api/v1/jobs/([^/]+))", [&jobs, job_id](const httplib::Request& req, httplib::Response& res) {
    auto id = job_id(req.matches[1]);
    if (!id.ok()) return ReplyError(res, id.status());
    ReplyResult(res, jobs.Get(*id), 200);
  });
  s.Post(R"(/api/v1/jobs/([^/]+)/(cancel|resume|retry))", [&jobs, job_id](const httplib::Request& req,
                                                                         httplib::Response& res) {
    auto b = Body(req);
    if (!b.ok()) return ReplyError(res, b.status());
    auto id = job_id(req.matches[1]);
    if (!id.ok()) return ReplyError(res, id.status());
    std::string action = req.matches[2];
    Status st;
    if (action == "resume") {
      st = control::CheckFields(*b, {"comment"});
      auto comment = control::StringField(*b, "comment", "");
      if (st.ok()) st = comment.status();
      if (st.ok()) st = jobs.Resume(*id, *comment);
    } else {
      st = control::CheckFields(*b, {});
      if (st.ok()) st = action == "cancel" ? jobs.Cancel(*id) : jobs.Retry(*id);
    }
    if (!st.ok()) return ReplyError(res, st);
    auto j = jobs.Get(*id);
    if (!j.ok()) return ReplyError(res, j.status());
    Reply(res, json{{"job", *j}}, 202);
  });
}

}  // namespace ferry::api
