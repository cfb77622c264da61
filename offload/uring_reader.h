// The io_uring engine of FileReader (file_reader.h): one ring per reader, sized to the queue
// depth; blocks go out as IORING_OP_READ_FIXED when they land in a registered buffer and as
// IORING_OP_READ otherwise; completions are reaped in batches and each is checked by the shared
// bookkeeping (short reads and EAGAIN re-queued, errors reported with file and offset).
#pragma once

#include <memory>
#include <string>

#include "offload/file_reader.h"

namespace glm {

// Takes ownership of `fd` on success only. Fails (with the errno text) where io_uring is
// unavailable: kernel too old, disabled by sysctl, or refused by a sandbox (EPERM/ENOSYS).
StatusOr<std::unique_ptr<FileReader>> OpenUringReader(const std::string& path, int fd,
                                                      uint64_t size, bool direct,
                                                      const ReaderOptions& opts);

}  // namespace glm
