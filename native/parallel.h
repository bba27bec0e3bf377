// A tiny persistent thread pool: parallel_for splits [0, n) into one contiguous range per
// thread (the caller runs the first). Thread count follows qc::set_threads.
#pragma once
#include <cstddef>
#include <functional>

namespace qc {

void pool_set_threads(int n);
// fn(begin, end, thread_index); ranges are disjoint and cover [0, n).
void parallel_for(size_t n, const std::function<void(size_t, size_t, int)>& fn);
int pool_threads();

}  // namespace qc
