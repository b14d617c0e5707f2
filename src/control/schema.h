// The control plane's schema: numbered migrations for store::Migrate (src/store/database.h).
// Types are the portable ones (BIGINT, DOUBLE PRECISION, TEXT; store/database.h).
// Tables: sites, enrollments, nodes, policies, machines, items, jobs, job_steps,
// recovery_points. JSON documents (disk lists, item properties, job parameters) are TEXT
// columns; what the server filters or sorts on has a column of its own.
// Numbers are never reused: a change is a new migration appended to the list.
#pragma once

#include <vector>

#include "store/database.h"

namespace ferry::control {

const std::vector<store::Migration>& ControlMigrations();

}  // namespace ferry::control
