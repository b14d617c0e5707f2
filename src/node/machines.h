// Machines: the compute side of a node. The node's launcher (launch/launcher.h, chosen by the
// node config's [launcher]) starts recovered machines from the disks this node exports, and
// the control plane's failover steps drive it through `/v1/machines` (node-api.md). A node
// also stands in for machines it did not start — the protected machine at the source site —
// when they are adopted with a way to power them off (a QMP socket, or a command for a
// physical server), so "shut down the source before failover" is one call for both.
//
// Persistence: DATA/machines/NAME/ is the launcher's directory (spec, console, QMP socket)
// for launched machines, and holds external.json for adopted ones. A restarted node lists
// them again; QEMU machines keep running across a node restart.
//
// Stop is asynchronous: it returns at once with state "Stopping" and a thread of this class
// powers the machine off (graceful first, forced after the timeout), so a machine that
// ignores its power button never blocks a failover.
//
// Thread-safety: every public method may be called from any thread; calls for one machine
// are serialised. Errors: kNotFound (no such machine), kInvalidArgument (bad request; the
// message names the field), kFailedPrecondition (the site cannot do it, e.g. an unknown
// network), and the launcher's errors.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "launch/launcher.h"
#include "node/config.h"

namespace ferry::node {

class Machines {
 public:
  // Makes the configured launcher. kFailedPrecondition when the config cannot work.
  static Result<std::unique_ptr<Machines>> Open(const NodeConfig& config);
  ~Machines();

  std::string kind() const { return launcher_->kind(); }
  // {"kind", "networks": [...], "machines": [{"name", "state", "launcher"}]}, without asking
  // the launcher (the last state seen): cheap, for the node's status.
  nlohmann::json Summary();

  // body: {"name", "disks": [NBD URI...], "cpus", "memory_mib", "network" (a name from the
  // config), "isolated" (bool: a test failover's copy of that network), "ip_address",
  // "mac_address", "kernel", "initrd", "cmdline", "probe": {"tcp_port", "console"}}.
  // Idempotent: a machine of that name that runs is kept; a stopped one starts again.
  Result<nlohmann::json> Launch(const nlohmann::json& body);
  // body: {"name", "qmp": "/path/to/qmp.sock"} or {"name", "stop_command": "…"}.
  Result<nlohmann::json> Adopt(const nlohmann::json& body);
  // The machine's status object (asks the launcher and runs the probe).
  Result<nlohmann::json> Get(const std::string& name);
  nlohmann::json List();
  Result<nlohmann::json> Stop(const std::string& name, bool graceful, int64_t timeout_ms);
  Status Remove(const std::string& name);
  Result<nlohmann::json> Console(const std::string& name, int64_t offset, int64_t max_bytes);

 private:
  struct Entry {
    std::mutex mu;          // one operation at a time on this machine (held to start a stop)
    std::thread stopper;    // under mu
    std::mutex state_mu;    // guards the three below (the stopper thread writes them)
    std::string last_state = "Unknown";
    bool stopping = false;
    std::string stop_error;
  };
  explicit Machines(const NodeConfig& config, std::unique_ptr<launch::Launcher> launcher);
  std::string Dir(const std::string& name) const;
  std::shared_ptr<Entry> Find(const std::string& name, bool create);
  Result<launch::MachineSpec> SpecFrom(const nlohmann::json& body) const;
  Result<nlohmann::json> Describe(const std::string& name, Entry& e);
  Result<nlohmann::json> External(const std::string& name);

  const NodeConfig config_;
  std::unique_ptr<launch::Launcher> launcher_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace ferry::node
