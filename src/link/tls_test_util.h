// Test helpers for TLS: a throwaway PKI made with the `openssl` command line, and a
// TLS connection pair over loopback TCP. Test-only (header-only, never in the library).
//
// TestPki::Make() creates, in a fresh directory under the test temp dir (removed again when
// the TestPki is destroyed):
//   ca.pem/ca.key          the trusted CA ("ferry-test-ca")
//   server.pem/server.key  CN=server, subjectAltName DNS:localhost, signed by the CA
//   client.pem/client.key  CN=client, signed by the CA
//   other-ca.pem           another CA, and rogue.pem/rogue.key (CN=rogue) signed by it
// Keys are P-256; certificates are valid for ten years from now. Generation takes a few
// hundred milliseconds, so make one per test suite.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "env/scratch_dir_test_util.h"
#include "env/socket.h"
#include "link/tls.h"

namespace ferry::test {

class TestPki {
 public:
  // nullptr (with a test failure recorded) if openssl failed.
  static std::unique_ptr<TestPki> Make() {
    std::unique_ptr<TestPki> pki(new TestPki());
    if (pki->dir_.empty()) return nullptr;  // ScratchDir recorded the failure
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string leaf_ext = "extendedKeyUsage=serverAuth,clientAuth\n";
    if (!pki->Run("openssl req -x509" + ec + " -days 3650 -subj /CN=ferry-test-ca" +
                  " -keyout ca.key -out ca.pem") ||
        !pki->Run("openssl req -x509" + ec + " -days 3650 -subj /CN=other-ca" +
                  " -keyout other-ca.key -out other-ca.pem") ||
        !pki->Leaf("server", "ca", "subjectAltName=DNS:localhost\n" + leaf_ext) ||
        !pki->Leaf("client", "ca", leaf_ext) || !pki->Leaf("rogue", "other-ca", leaf_ext)) {
      return nullptr;
    }
    return pki;
  }

  const std::string& dir() const { return dir_; }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  // cert/key of `who` ("server", "client", "rogue"), trusting our CA.
  TlsFiles Files(const std::string& who) const {
    return TlsFiles{Path(who + ".pem"), Path(who + ".key"), Path("ca.pem"), ""};
  }
  TlsFiles Server() const { return Files("server"); }
  TlsFiles Client() const { return Files("client"); }
  TlsFiles Rogue() const { return Files("rogue"); }

 private:
  TestPki() = default;

  bool Run(const std::string& command) const {
    std::string full = "cd '" + dir_ + "' && " + command + " >>openssl.log 2>&1";
    int rc = std::system(full.c_str());
    if (rc != 0) ADD_FAILURE() << "`" << command << "` failed (" << rc << "); see " << dir_;
    return rc == 0;
  }

  // A key and a certificate for `name`, signed by the CA `ca`, with extensions `ext`.
  bool Leaf(const std::string& name, const std::string& ca, const std::string& ext) const {
    std::ofstream(Path(name + ".ext")) << ext;
    return Run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" +
               name + " -keyout " + name + ".key -out " + name + ".csr") &&
           Run("openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
               ".key -CAcreateserial -days 3650 -extfile " + name + ".ext -out " + name + ".pem");
  }

  ScratchDir scratch_{"ferry-pki"};
  const std::string& dir_ = scratch_.path();
};

// Both ends of one handshake over loopback TCP; each side's result, ok or not.
struct TlsPair {
  std::optional<Result<std::unique_ptr<TlsStream>>> server;
  std::optional<Result<std::unique_ptr<TlsStream>>> client;
};

// Connects a client to a server on 127.0.0.1 and runs both handshakes at once (the server in
// a thread of its own). Ends that fail still report their Status.
inline TlsPair HandshakePair(std::shared_ptr<TlsContext> server_ctx,
                             std::shared_ptr<TlsContext> client_ctx) {
  TlsPair pair;
  auto listener = Listener::Tcp("127.0.0.1", 0);
  if (!listener.ok()) {
    ADD_FAILURE() << listener.status().ToString();
    return pair;
  }
  std::thread server([&] {
    auto sock = (*listener)->Accept();
    if (!sock.ok()) {
      pair.server.emplace(sock.status());
      return;
    }
    pair.server.emplace(TlsStream::Accept(server_ctx, std::move(sock).value()));
  });
  auto sock = ConnectTcp("127.0.0.1", (*listener)->port());
  if (sock.ok()) {
    pair.client.emplace(TlsStream::Connect(client_ctx, std::move(sock).value()));
  } else {
    pair.client.emplace(sock.status());
    (*listener)->Shutdown();
  }
  server.join();
  return pair;
}

}  // namespace ferry::test
