// `ferry node --config FILE`: the node daemon (src/node). Runs until SIGINT or SIGTERM.
#include <cstdio>

#include "cli/commands.h"
#include "cli/serve.h"
#include "node/api.h"
#include "node/config.h"
#include "node/node.h"

namespace ferry::cli {

void AddNodeCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("node", "Run the node daemon: capture, replicate, serve recovery points");
  auto config = std::make_shared<std::string>();
  cmd->add_option("--config", *config, "The node's TOML configuration file")->required();
  cmd->callback([=] {
    sigset_t stop = BlockStopSignals();
    auto c = node::LoadNodeConfig(*config);
    Check(c.status(), "configuration");
    auto n = node::Node::Start(*c);
    Check(n.status(), "cannot start node " + c->name);
    node::Api api(n->get(), c->api_token);
    Check(api.Listen(c->api_listen), "listen.api");
    std::printf("node %s (site %s): command interface at http://%s\n", c->name.c_str(),
                c->site.c_str(), c->api_listen.c_str());
    for (const auto& a : (*n)->nbd_addresses()) std::printf("nbd exports at %s\n", a.c_str());
    if (!(*n)->link_address().empty()) {
      std::printf("links accepted at %s\n", (*n)->link_address().c_str());
    }
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    api.Stop();
    (*n)->Stop();
  });
}

}  // namespace ferry::cli
