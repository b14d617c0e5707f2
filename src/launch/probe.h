// The probe that says a started machine is really up, shared by the qemu and exec launchers
// (MachineSpec::console_regex and tcp_port; docs/launchers.md, "Probes"):
//   console  some line of the console file matches the regex (POSIX extended syntax,
//            std::regex::extended, searched anywhere in the line unless anchored; a line is
//            the text between '\n's without a trailing '\r'). The first 16 MiB are searched.
//   tcp      a TCP connect to the address succeeds within 1 s AND the machine then sends at
//            least one byte within 1 s. The byte is required because QEMU's user-mode
//            forwarding accepts the host side of the connection itself, even when nothing
//            listens in the guest, and closes it only afterwards: the guest's service must
//            send a banner (SSH, SMTP, FTP do; for HTTP use the console probe).
// Both set: both must pass. Neither: ok.
//
// Thread-safe; blocks up to ~2 s for the tcp probe. Never fails: the result says why not.
#pragma once

#include <string>

#include "env/env.h"

namespace ferry::launch {

struct ProbeTarget {
  std::string console_path;   // the file the console probe reads
  std::string console_regex;  // "" : no console probe
  int tcp_port = 0;           // 0 : no tcp probe
  std::string tcp_address;    // host:port to connect to; "" with tcp_port set: cannot probe
};

struct ProbeResult {
  bool ok = false;
  std::string detail;  // "console matched '^ferry-guest: ready' at line 12; tcp 127.0.0.1:4000 sent 'ssh-2.0'"
};

ProbeResult RunProbe(Env* env, const ProbeTarget& target);

}  // namespace ferry::launch
