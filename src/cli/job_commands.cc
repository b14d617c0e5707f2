// `ferry job list|show|watch|cancel|resume`: the jobs that carry out every operation.
#include <cstdio>

#include "cli/commands.h"
#include "cli/control_verbs.h"
#include "cli/resolve.h"

namespace ferry::cli {

namespace {

std::string JobPath(const std::string& id) { return "/jobs/" + UrlEncode(id); }

// `ferry job VERB ID`.
CLI::App* AddJobVerb(CLI::App* job, const char* verb, const char* help, std::shared_ptr<VerbOptions>* options,
                     std::shared_ptr<std::string>* id) {
  auto* cmd = job->add_subcommand(verb, help);
  *options = AddVerbOptions(cmd);
  *id = std::make_shared<std::string>();
  cmd->add_option("id", **id, "The job's id (job-17)")->required();
  return cmd;
}

}  // namespace

void AddJobCommands(CLI::App& app) {
  auto* job = app.add_subcommand("job", "Jobs: the durable workflows behind every operation");
  job->require_subcommand(1);
  {
    auto* cmd = job->add_subcommand("list", "List jobs, newest first");
    auto o = AddVerbOptions(cmd);
    auto item = std::make_shared<std::string>();
    auto state = std::make_shared<std::string>();
    auto limit = std::make_shared<int64_t>(0);
    cmd->add_option("--item", *item, "Only the jobs of this replicated item (id or name)");
    cmd->add_option("--state", *state, "Only jobs in this state (InProgress, Failed, Suspended, ...)");
    cmd->add_option("--limit", *limit, "At most this many (default: all)")->check(CLI::PositiveNumber);
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      std::string item_id;
      if (!item->empty()) item_id = StringField(OrExit(Resolve(client, *item, kItemKind), *item), "id");
      PrintList(*o,
                OrExit(client.List("/jobs", {{"item", item_id}, {"state", *state}}, *limit), "listing jobs"),
                JobsTable);
    });
  }
  {
    std::shared_ptr<VerbOptions> o;
    std::shared_ptr<std::string> id;
    auto* cmd = AddJobVerb(job, "show", "Show a job: state, error, steps", &o, &id);
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      PrintResource(*o, OrExit(client.Get(JobPath(*id)), *id), JobDetails);
    });
  }
  {
    std::shared_ptr<VerbOptions> o;
    std::shared_ptr<std::string> id;
    auto* cmd =
        AddJobVerb(job, "watch", "Follow a job to its end; the exit code tells how it ended", &o, &id);
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      FollowAndReport(client, *o, *id);
    });
  }
  {
    std::shared_ptr<VerbOptions> o;
    std::shared_ptr<std::string> id;
    auto* cmd = AddJobVerb(job, "cancel", "Ask a job to stop; it returns to a consistent state", &o, &id);
    AddWaitFlag(cmd, o.get());
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      json answer = OrExit(client.Post(JobPath(*id) + "/cancel"), "cancelling " + *id);
      if (o->wait) return FollowAndReport(client, *o, *id);
      if (o->json()) return PrintJson(answer);
      std::printf("cancel requested: %s\n", id->c_str());
    });
  }
  {
    std::shared_ptr<VerbOptions> o;
    std::shared_ptr<std::string> id;
    auto* cmd =
        AddJobVerb(job, "resume", "Go on with a Suspended job once its manual action is done", &o, &id);
    auto comment = std::make_shared<std::string>();
    cmd->add_option("--comment", *comment, "What was done (kept with the job)");
    AddWaitFlag(cmd, o.get());
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      json answer =
          OrExit(client.Post(JobPath(*id) + "/resume", json{{"comment", *comment}}), "resuming " + *id);
      if (o->wait) return FollowAndReport(client, *o, *id);
      if (o->json()) return PrintJson(answer);
      std::printf("resumed: %s\n", id->c_str());
    });
  }
}

}  // namespace ferry::cli
