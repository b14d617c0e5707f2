// Controller: the control plane in one process (`ferry server`): the store, the inventory,
// the replicated items, the job engine with every workflow registered, and the monitor that
// keeps item health, RPO and the recovery-point catalog fresh from the nodes.
//
// Thread-safety: every accessor may be used from any thread; Start and Stop from one.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "control/groups.h"
#include "control/inventory.h"
#include "control/items.h"
#include "control/jobs.h"
#include "control/plans.h"
#include "store/database.h"

namespace ferry::control {

struct ControllerOptions {
  int64_t monitor_interval_ms = 2000;
};

class Controller {
 public:
  // Migrates the database and creates the default policy.
  static Result<std::unique_ptr<Controller>> Open(std::unique_ptr<store::Database> db, Clock* clock,
                                                  ControllerOptions options = {});
  ~Controller();
  // Resumes interrupted jobs and starts the monitor.
  Status Start();
  void Stop();

  store::Database& db() { return *db_; }
  Clock& clock() { return *clock_; }
  Inventory& inventory() { return inventory_; }
  Items& items() { return items_; }
  Plans& plans() { return plans_; }
  Groups& groups() { return groups_; }
  JobEngine& jobs() { return jobs_; }

  // One pass of the monitor (the monitor thread calls it every interval; tests may too).
  void MonitorOnce();

 private:
  Controller(std::unique_ptr<store::Database> db, Clock* clock, ControllerOptions options);
  void MonitorLoop();
  void GroupPointsLoop();  // takes the due consistency-group points (groups.h)
  Status RefreshItem(int64_t id);
  Status IngestPoints(const ItemRecord& item);

  std::unique_ptr<store::Database> db_;
  Clock* clock_;
  ControllerOptions options_;
  Inventory inventory_;
  JobEngine jobs_;
  Items items_;
  Groups groups_;
  Plans plans_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread monitor_;
  std::thread group_points_;
};

// Registers the item workflows (workflows.cc) on the engine.
void RegisterWorkflows(JobEngine& engine);

}  // namespace ferry::control
