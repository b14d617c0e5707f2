#include "cli/cli_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "env/env.h"

namespace ferry::cli {

using nlohmann::json;

EnvLookup ProcessEnv() {
  return [](const std::string& name) {
    const char* v = std::getenv(name.c_str());
    return std::string(v ? v : "");
  };
}

std::string CliConfigPath(const EnvLookup& env) {
  if (std::string p = env("FERRY_CONFIG"); !p.empty()) return p;
  // XDG: a relative XDG_CONFIG_HOME is invalid and must be ignored.
  if (std::string xdg = env("XDG_CONFIG_HOME"); !xdg.empty() && xdg[0] == '/') {
    return JoinPath(JoinPath(xdg, "ferry"), "cli.json");
  }
  if (std::string home = env("HOME"); !home.empty()) return JoinPath(home, ".config/ferry/cli.json");
  return "";
}

std::string DefaultCliConfigPath() { return CliConfigPath(ProcessEnv()); }

namespace {

struct FileValues {
  std::string server;
  std::string token;
};

Result<FileValues> ReadConfigFile(const std::string& path, bool must_exist) {
  FileValues v;
  if (path.empty()) return v;
  auto text = ReadFileToString(Env::Posix(), path);
  if (!text.ok()) {
    if (text.status().code() == Code::kNotFound) {
      if (!must_exist) return v;
      return NotFound("FERRY_CONFIG names " + path + ", which does not exist");
    }
    return text.status().WithContext("CLI configuration");
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return InvalidArgument(path + " is not a JSON object like {\"server\": \"" + std::string(kDefaultServer) +
                           "\", \"token\": \"...\"}");
  }
  for (auto [key, out] : {std::pair{"server", &v.server}, std::pair{"token", &v.token}}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_string()) return InvalidArgument(path + ": \"" + key + "\" must be a string");
    *out = j[key].get<std::string>();
  }
  return v;
}

Status ErrnoError(const std::string& what, const std::string& path, int err) {
  return IoError(what + " " + path + ": " + std::strerror(err));
}

// mkdir -p with mode 0700 for the directories it creates: they hold a secret.
Status MakeDirs(const std::string& dir) {
  if (dir.empty() || dir == "/" || dir == ".") return Status::Ok();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    return S_ISDIR(st.st_mode) ? Status::Ok() : FailedPrecondition(dir + " is not a directory");
  }
  RETURN_IF_ERROR(MakeDirs(DirName(dir)));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir", dir, errno);
  return Status::Ok();
}

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("write", path, errno);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<Connection> ResolveConnection(const std::string& flag_server, const std::string& flag_token,
                                     const EnvLookup& env) {
  Connection c;
  auto pick = [](const std::string& value, const std::string& source, std::string* out,
                 std::string* out_source) {
    if (!out->empty() || value.empty()) return;
    *out = value;
    *out_source = source;
  };
  pick(flag_server, "--server", &c.server, &c.server_source);
  pick(flag_token, "--token", &c.token, &c.token_source);
  pick(env("FERRY_SERVER"), "FERRY_SERVER", &c.server, &c.server_source);
  pick(env("FERRY_TOKEN"), "FERRY_TOKEN", &c.token, &c.token_source);
  if (c.server.empty() || c.token.empty()) {
    const bool named = !env("FERRY_CONFIG").empty();
    const std::string path = CliConfigPath(env);
    ASSIGN_OR_RETURN(FileValues file, ReadConfigFile(path, named));
    pick(file.server, path, &c.server, &c.server_source);
    pick(file.token, path, &c.token, &c.token_source);
  }
  pick(kDefaultServer, "default", &c.server, &c.server_source);
  return c;
}

Status WriteCliConfig(const std::string& path, const std::string& server, const std::string& token) {
  if (path.empty()) return InvalidArgument("no path for the CLI configuration: set FERRY_CONFIG or HOME");
  const std::string dir = DirName(path);
  RETURN_IF_ERROR(MakeDirs(dir));
  const std::string text = json{{"server", server}, {"token", token}}.dump(2) + "\n";
  // Written here rather than through Env: Env creates files 0644, and the token must never be
  // readable by others, not even for the moment between create and chmod.
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // a failed earlier attempt; O_EXCL below then guarantees our mode
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("create", tmp, errno);
  Status s = WriteAll(fd, text, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoError("fsync", tmp, errno);
  if (::close(fd) != 0 && s.ok()) s = ErrnoError("close", tmp, errno);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError("rename to", path, errno);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return Env::Posix()->SyncDir(dir);
}

}  // namespace ferry::cli
