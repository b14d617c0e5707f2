// The guard is a per-thread jump buffer: the handler jumps back into the copy that faulted.
// SA_NODEFER keeps SIGBUS unblocked inside the handler, so jumping out of it without
// restoring a signal mask (sigsetjmp(…, 0), which costs no system call) leaves the thread's
// mask as it was.
#include "env/mapped_copy.h"

#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>

namespace ferry {
namespace {

thread_local sigjmp_buf* t_guard = nullptr;
struct sigaction g_previous;

void OnSigbus(int sig, siginfo_t* info, void* context) {
  sigjmp_buf* guard = t_guard;
  if (guard != nullptr) {
    t_guard = nullptr;
    siglongjmp(*guard, 1);
  }
  // Not a guarded copy: whoever handled SIGBUS before handles it now.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
      g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  // The default action: returning re-runs the faulting access, which now kills the process.
  std::signal(SIGBUS, SIG_DFL);
}

void InstallHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    // The previous handler is known before ours can run.
    ::sigaction(SIGBUS, nullptr, &g_previous);
    ::sigaction(SIGBUS, &sa, nullptr);
  });
}

}  // namespace

bool CopyFromMapping(void* dst, const void* src, size_t n) {
  InstallHandler();
  sigjmp_buf guard;
  if (sigsetjmp(guard, 0) != 0) return false;
  t_guard = &guard;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::memcpy(dst, src, n);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_guard = nullptr;
  return true;
}

}  // namespace ferry
