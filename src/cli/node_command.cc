// `ferry node --config FILE`: the node daemon (src/node). Runs until SIGINT or SIGTERM.
#include <cstdio>

#include "cli/commands.h"
#include "cli/serve.h"
#include "env/socket.h"
#include "node/api.h"
#include "node/config.h"
#include "node/node.h"
#include "node/server_client.h"

namespace ferry::cli {

void AddNodeCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("node", "Run the node daemon: capture, replicate, serve recovery points");
  auto config = std::make_shared<std::string>();
  // Required only to run the daemon: `ferry node list|show|enroll` (control_commands.cc) need none.
  cmd->add_option("--config", *config, "The node's TOML configuration file (runs the daemon)");
  cmd->callback([=] {
    if (!cmd->get_subcommands().empty()) return;
    if (config->empty()) throw CLI::RequiredError("--config");
    sigset_t stop = BlockStopSignals();
    KeepLargeBuffersInTheHeap();
    auto c = node::LoadNodeConfig(*config);
    Check(c.status(), "configuration");
    auto n = node::Node::Start(*c);
    Check(n.status(), "cannot start node " + c->name);
    node::Api api(n->get(), c->api_token);
    Check(api.Listen(c->api_listen), "listen.api");
    // With port 0 in listen.api, the port the interface got.
    const node::NodeAdvert advert = node::AdvertOf(*c, **n, api.port());
    std::string api_host;
    uint16_t api_port = 0;
    Check(SplitHostPort(c->api_listen, &api_host, &api_port), "listen.api");
    if (api_host.find(':') != std::string::npos) api_host = "[" + api_host + "]";
    std::printf("node %s (site %s): command interface at http://%s:%d\n", c->name.c_str(),
                c->site.c_str(), api_host.c_str(), api.port());
    for (const auto& a : (*n)->nbd_addresses()) std::printf("nbd exports at %s\n", a.c_str());
    if (!(*n)->link_address().empty()) {
      std::printf("links accepted at %s\n", (*n)->link_address().c_str());
    }
    std::unique_ptr<node::ServerClient> server;
    if (!c->server_url.empty()) {
      node::ServerClientOptions o;
      o.url = c->server_url;
      o.enroll_token = c->enroll_token;
      o.data_dir = c->data_dir;
      o.advert = advert;
      node::Node* nn = n->get();
      o.status = [nn] { return nn->StatusJson(); };
      o.event = [nn](const std::string& severity, const std::string& message) {
        nn->AddEvent(severity, "", message);
      };
      auto started = node::ServerClient::Start(std::move(o));
      Check(started.status(), "server.url");
      server = std::move(*started);
      std::printf("reporting to the server at %s\n", c->server_url.c_str());
    }
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    if (server) server->Stop();
    api.Stop();
    (*n)->Stop();
  });
}

}  // namespace ferry::cli
