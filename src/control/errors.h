// Errors of the control plane are Status values (base/status.h) that may also carry what the
// operator should do about them ("action"), and a finer code for the API: InvalidState, an
// operation that the item's state does not allow. Both travel inside the Status message, so
// that they cross every layer that passes a Status along; Describe takes them apart again.
#pragma once

#include <string>

#include "base/status.h"

namespace ferry::control {

// An error with a recommended action.
Status WithAction(Code code, const std::string& message, const std::string& action);
// kFailedPrecondition that the API reports as code "InvalidState".
Status InvalidState(const std::string& message, const std::string& action);

struct ErrorParts {
  std::string code;     // "NotFound", "InvalidState", …
  std::string message;  // for people
  std::string action;   // what to do; may be empty
};
ErrorParts Describe(const Status& s);

}  // namespace ferry::control
