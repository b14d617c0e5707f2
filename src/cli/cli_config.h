// Where the `ferry` verbs find the server and the API token.
//
// Each of the two values is taken from the first of these that sets it:
//   1. the flags --server URL and --token TOKEN of the verb;
//   2. the environment: FERRY_SERVER, FERRY_TOKEN;
//   3. the CLI configuration file: the file named by FERRY_CONFIG, else
//      $XDG_CONFIG_HOME/ferry/cli.json, else ~/.config/ferry/cli.json;
//   4. for the server only: http://127.0.0.1:7700 (where `ferry up` listens).
// An empty value counts as unset. A missing default file is fine; a file named by
// FERRY_CONFIG that does not exist, or any file that is not valid, is an error.
//
// The configuration file (`ferry up` writes it; mode 0600, since it holds the token):
//
//   {"server": "http://127.0.0.1:7700", "token": "3f9c…"}
//
// Both keys are optional strings; other keys are ignored, so that a newer ferry can add some.
//
// Errors (Status): kInvalidArgument for a file that is not such a JSON object (the message
// names the file and the key); kNotFound when FERRY_CONFIG names a missing file; kIoError
// when the file cannot be read or written. Functions here are thread-compatible.
#pragma once

#include <functional>
#include <string>

#include "base/status.h"

namespace ferry::cli {

inline constexpr char kDefaultServer[] = "http://127.0.0.1:7700";

// Looks up an environment variable; "" when unset. Tests pass their own.
using EnvLookup = std::function<std::string(const std::string& name)>;
// The process environment.
EnvLookup ProcessEnv();

// The server and token to use, and where each came from ("--server", "FERRY_TOKEN", the
// file's path, "default"), so that errors can say which setting to fix.
struct Connection {
  std::string server;
  std::string token;
  std::string server_source;
  std::string token_source;  // "" when there is no token at all
};

// The path of the CLI configuration file: FERRY_CONFIG, else the XDG location; "" when
// neither FERRY_CONFIG, XDG_CONFIG_HOME nor HOME is set.
std::string CliConfigPath(const EnvLookup& env);
// CliConfigPath of the process environment: the file `ferry up` writes and the verbs read.
std::string DefaultCliConfigPath();

// Applies the order above. The file is read only when flags and environment leave a value
// unset.
Result<Connection> ResolveConnection(const std::string& flag_server, const std::string& flag_token,
                                     const EnvLookup& env);

// Writes the configuration file atomically (a temporary file, fsync, rename, fsync of the
// directory) with mode 0600, creating missing parent directories (mode 0700).
Status WriteCliConfig(const std::string& path, const std::string& server, const std::string& token);

}  // namespace ferry::cli
