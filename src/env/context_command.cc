#include "env/context_command.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <random>

namespace ferry {

namespace {

std::string RandomSuffix() {
  std::random_device rd;  // the kernel's random source on Linux
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) out += hex[rd() & 15];
  return out;
}

}  // namespace

Result<CommandResult> RunWithContextFile(Env* env, const std::string& dir, const std::string& command,
                                         const std::map<std::string, std::string>& vars, const std::string& context,
                                         int64_t timeout_ms) {
  RETURN_IF_ERROR(env->CreateDir(dir));
  std::string path;
  std::unique_ptr<File> file;
  for (int attempt = 0; !file; ++attempt) {
    path = JoinPath(dir, "ferry-context-" + RandomSuffix() + ".json");
    auto f = env->OpenFile(path, OpenMode::kCreateNew);
    if (f.ok()) {
      file = std::move(*f);
    } else if (f.status().code() != Code::kAlreadyExists || attempt >= 8) {
      return f.status().WithContext("writing the script's context file");
    }
  }
  Status written = file->WriteAt(0, context);
  file.reset();
  if (!written.ok()) {
    (void)env->RemoveFile(path);
    return written.WithContext("writing the script's context file " + path);
  }
  std::map<std::string, std::string> all = vars;
  all["FERRY_CONTEXT"] = path;
  Result<CommandResult> r = RunCommand(command, all, timeout_ms);
  (void)env->RemoveFile(path);
  return r;
}

Result<std::string> CommandProgram(const std::string& command) {
  size_t i = 0;
  std::string word;
  for (;;) {
    while (i < command.size() && std::isspace(static_cast<unsigned char>(command[i]))) ++i;
    size_t end = i;
    while (end < command.size() && !std::isspace(static_cast<unsigned char>(command[end]))) ++end;
    word = command.substr(i, end - i);
    i = end;
    // A leading NAME=value sets a variable for the program that follows.
    size_t eq = word.find('=');
    bool assignment = eq != std::string::npos && eq > 0 &&
                      (std::isalpha(static_cast<unsigned char>(word[0])) || word[0] == '_') &&
                      word.find('/') > eq;
    if (!assignment) break;
  }
  if (word.empty()) return InvalidArgument("the command '" + command + "' names no program");
  if (word.size() >= 2 && (word.front() == '\'' || word.front() == '"') && word.back() == word.front()) {
    word = word.substr(1, word.size() - 2);
  }
  ASSIGN_OR_RETURN(std::string path, FindProgram(word));
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return NotFound(path + " is not a regular file");
  }
  return path;
}

}  // namespace ferry
