// How the `ferry` verbs show the API's resources in `--output table` mode: list verbs print
// aligned tables, show verbs print "key: value" lines and then a table of the parts (disks,
// steps). Pure functions of the server's JSON (docs/protocols/server-api.md); a field the
// server left out or set to null shows as "-", so a newer or older server still renders.
// Times are shown as the API sends them (RFC 3339 UTC); durations and RPOs as "3.1s",
// "2m05s", "1h02m".
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/api_json.h"

namespace ferry::cli {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  // FormatTable (format.h).
  std::string Format() const;
};

// The field as text: "-" when missing or null; strings as they are; arrays joined with ", ";
// other values as JSON.
std::string Text(const json& object, const char* key);
// "0.4s", "12.3s", "2m05s", "1h02m", "3d04h"; "-" for a negative time.
std::string FormatDuration(double seconds);
// A number of seconds (an RPO) as FormatDuration; "-" when not a number.
std::string FormatSeconds(const json& seconds);
// 42.5 -> "42.5%", 100 -> "100%"; "-" when not a number.
std::string FormatPercent(const json& percent);
// Seconds from one RFC 3339 time to another; nullopt when either is missing or malformed.
std::optional<double> SecondsBetween(const json& from, const json& to);

// "key: value" lines with the values aligned.
std::string KeyValues(const std::vector<std::pair<std::string, std::string>>& lines);

// List tables; `items` is the list's "items" array.
Table SitesTable(const json& items);           // ID NAME CREATED
Table NodesTable(const json& items);           // ID NAME SITE HEALTH LAST-HEARTBEAT API-URL
Table PoliciesTable(const json& items);        // ID NAME RPO-THRESHOLD RETENTION APP-INTERVAL ...
Table MachinesTable(const json& items);        // ID NAME SITE NODE DISKS
Table ItemsTable(const json& items);           // ID NAME STATE HEALTH RPO DIRECTION ACTIVE-SITE JOB
Table JobsTable(const json& items);            // ID TYPE TARGET STATE PROGRESS STARTED
Table RecoveryPointsTable(const json& items);  // ID TIME KIND LABEL
// The steps of a job: STEP STATE DURATION MESSAGE.
Table StepsTable(const json& job);

// Show verbs: key: value lines, then the disks or steps table when there are any.
std::string SiteDetails(const json& site);
std::string NodeDetails(const json& node);
std::string PolicyDetails(const json& policy);
std::string MachineDetails(const json& machine);
std::string ItemDetails(const json& item);
std::string JobDetails(const json& job);

// "web1" for a job target {"kind", "id", "name"} (its id when it has no name).
std::string JobTarget(const json& job);

}  // namespace ferry::cli
