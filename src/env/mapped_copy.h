// CopyFromMapping: memcpy out of a file's memory mapping that survives the file failing
// under it.
//
// Reading a mapped file costs no system call, but where the mapping cannot supply a page —
// the file was cut short under it, or the device failed to read the page — the kernel sends
// the reading thread SIGBUS, which would kill the process (a node serving many volumes, for
// one bad disk). Copies made through this function turn that into a false return instead.
//
// The first call installs a SIGBUS handler for the process (once). A SIGBUS that does not
// come from one of these copies goes to the handler that was there before, or, where there
// was none, kills the process as it always would.
//
// Thread-safety: any number of threads may copy at once; each copy is guarded on its own.
#pragma once

#include <cstddef>

namespace ferry {

// Copies n bytes from src (inside a file mapping) to dst. Returns false, with dst partly
// written, where reading src raised SIGBUS.
bool CopyFromMapping(void* dst, const void* src, size_t n);

}  // namespace ferry
