// Persistent workers waiting on a condition variable; one job at a time.
#include "parallel.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace qc {

namespace {

struct Pool {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable wake, done;
  const std::function<void(size_t, size_t, int)>* job = nullptr;
  size_t n = 0;
  int parts = 1;
  unsigned long generation = 0;
  int pending = 0;
  bool stop = false;

  void worker(int index) {
    unsigned long seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lock(mu);
      wake.wait(lock, [&] { return stop || generation != seen; });
      if (stop) return;
      seen = generation;
      const auto* fn = job;
      size_t total = n;
      int p = parts;
      lock.unlock();
      if (index < p) {
        size_t b = total * index / p, e = total * (index + 1) / p;
        if (b < e) (*fn)(b, e, index);
      }
      lock.lock();
      if (--pending == 0) done.notify_one();
    }
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    wake.notify_all();
    for (auto& t : workers) t.join();
  }
};

Pool& pool() {
  static Pool p;
  return p;
}

int g_pool_threads = 1;

}  // namespace

void pool_set_threads(int n) {
  Pool& p = pool();
  g_pool_threads = std::max(1, n);
  while ((int)p.workers.size() < g_pool_threads - 1) {
    int index = (int)p.workers.size() + 1;
    p.workers.emplace_back([&p, index] { p.worker(index); });
  }
}

int pool_threads() { return g_pool_threads; }

void parallel_for(size_t n, const std::function<void(size_t, size_t, int)>& fn) {
  int parts = (int)std::min<size_t>(g_pool_threads, n);
  if (parts <= 1) {
    if (n) fn(0, n, 0);
    return;
  }
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    p.job = &fn;
    p.n = n;
    p.parts = parts;
    p.pending = (int)p.workers.size();
    p.generation++;
  }
  p.wake.notify_all();
  fn(0, n / parts, 0);
  std::unique_lock<std::mutex> lock(p.mu);
  p.done.wait(lock, [&] { return p.pending == 0; });
}

}  // namespace qc
