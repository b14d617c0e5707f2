#include "cli/job_view.h"

#include <algorithm>
#include <cmath>

#include "cli/api_json.h"
#include "cli/exit_codes.h"
#include "cli/tables.h"

namespace ferry::cli {

namespace {

constexpr int kBarWidth = 20;

const json& Steps(const json& job) {
  static const json kNone = json::array();
  const json& steps = Field(job, "steps");
  return steps.is_array() ? steps : kNone;
}

std::string StepTitle(const json& step) {
  std::string t = StringField(step, "title");
  return t.empty() ? StringField(step, "name") : t;
}

std::string StepPosition(const json& job, int index) {
  return std::to_string(index + 1) + "/" + std::to_string(Steps(job).size());
}

std::string JobHeadline(const json& job) {
  return StringField(job, "id") + " " + StringField(job, "type") + " " + JobTarget(job);
}

}  // namespace

bool IsFinalJobState(const std::string& state) {
  return state == "Succeeded" || state == "Failed" || state == "Cancelled";
}

bool StopsFollowing(const json& job) {
  std::string state = StringField(job, "state");
  return IsFinalJobState(state) || state == "Suspended";
}

int ExitCodeForJobState(const std::string& state) {
  if (state == "Succeeded") return exit_code::kOk;
  if (state == "Failed") return exit_code::kJobFailed;
  if (state == "Cancelled") return exit_code::kJobCancelled;
  if (state == "Suspended") return exit_code::kJobSuspended;
  return exit_code::kError;
}

int CurrentStep(const json& job) {
  const json& steps = Steps(job);
  int last_started = -1;
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string state = StringField(steps[i], "state");
    if (state == "InProgress" || state == "Suspended") return static_cast<int>(i);
    if (!state.empty() && state != "NotStarted") last_started = static_cast<int>(i);
  }
  return last_started;
}

std::string ProgressLine(const json& job, size_t width) {
  const json& progress = Field(job, "progress");
  double p = progress.is_number() ? std::clamp(progress.get<double>(), 0.0, 100.0) : 0.0;
  int filled = static_cast<int>(std::lround(p / 100.0 * kBarWidth));
  std::string line = "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "] ";
  std::string percent = FormatPercent(p);
  line += std::string(percent.size() < 6 ? 6 - percent.size() : 0, ' ') + percent;
  std::string state = StringField(job, "state");
  if (state != "InProgress" && !state.empty()) line += "  " + state;
  int current = CurrentStep(job);
  if (current >= 0) {
    const json& step = Steps(job)[current];
    line += "  " + StepPosition(job, current) + " " + StepTitle(step);
    if (std::string message = StringField(step, "message"); !message.empty()) line += ": " + message;
  }
  if (line.size() > width) line.resize(width);
  return line;
}

std::vector<std::string> ChangeLines(const json* before, const json& after) {
  std::vector<std::string> lines;
  std::string state = StringField(after, "state");
  if (!before || StringField(*before, "state") != state) lines.push_back(JobHeadline(after) + ": " + state);
  const json& steps = Steps(after);
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& step = steps[i];
    std::string step_state = StringField(step, "state");
    std::string old_state = "NotStarted";
    if (before) {
      for (const json& old : Steps(*before)) {
        if (StringField(old, "name") == StringField(step, "name")) old_state = StringField(old, "state");
      }
    }
    if (step_state == old_state) continue;
    std::string line =
        "[" + StepPosition(after, static_cast<int>(i)) + "] " + StepTitle(step) + ": " + step_state;
    if (auto secs = SecondsBetween(Field(step, "started_at"), Field(step, "ended_at"))) {
      line += " (" + FormatDuration(*secs) + ")";
    }
    if (std::string message = StringField(step, "message"); !message.empty()) line += " - " + message;
    lines.push_back(std::move(line));
  }
  return lines;
}

std::string JobSummary(const json& job) {
  std::string state = StringField(job, "state");
  std::string out = JobHeadline(job) + ": " + state;
  if (auto secs = SecondsBetween(Field(job, "started_at"), Field(job, "ended_at"))) {
    out += " in " + FormatDuration(*secs);
  }
  out += "\n";
  Table steps = StepsTable(job);
  if (!steps.rows.empty()) out += steps.Format();
  const json& error = Field(job, "error");
  if (error.is_object()) {
    out += "error: " + StringField(error, "code") + ": " + StringField(error, "message") + "\n";
    if (std::string action = StringField(error, "action"); !action.empty()) out += "action: " + action + "\n";
  }
  if (state == "Suspended") {
    int current = CurrentStep(job);
    out += "waiting for a manual action";
    if (current >= 0) {
      const json& step = Steps(job)[current];
      out += ": " + StepTitle(step);
      if (std::string message = StringField(step, "message"); !message.empty()) out += ": " + message;
    }
    out += "\nwhen it is done: ferry job resume " + StringField(job, "id") + " [--comment TEXT]\n";
  }
  return out;
}

}  // namespace ferry::cli
