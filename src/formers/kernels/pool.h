// A thread pool that degrades gracefully on a shared CPU.
//
// OpenMP regions (at::parallel_for) split work statically and end in a barrier: when another process
// holds a core, each region waits for the descheduled thread's whole share, once per matrix product, and a
// 2-core machine with one busy neighbour decodes 5-10x slower than with one thread. Here the work is a
// list of small chunks that threads claim one at a time; the caller claims chunks too and afterwards waits
// only for chunks another thread has already started. A worker that is not running simply claims nothing,
// so a busy neighbour costs at most its share of the bandwidth, never a scheduler time slice per product.
// Workers spin briefly between jobs (decode issues one every few microseconds), then sleep.
#pragma once
#include <immintrin.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace formers_pool {

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(chunk) for chunk in [0, total), spread over the caller and the workers; returns when all are done
  void run(int64_t total, const std::function<void(int64_t)>& fn) {
    if (total <= 0) return;
    if (total > kMaxChunks) {  // more than the state word counts: on this thread alone
      for (int64_t c = 0; c < total; ++c) fn(c);
      return;
    }
    fn_.store(&fn, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t job = ++job_ & kJobMask;
    state_.store(job << 40 | static_cast<uint64_t>(total) << 20, std::memory_order_release);
    if (sleepers_.load(std::memory_order_acquire) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      cv_.notify_all();
    }
    int64_t mine = 0;
    for (int64_t c; (c = claim(job)) >= 0; ++mine) fn(c);
    if (mine < total) {  // wait for chunks other threads started
      int spins = 0;
      while (done_.load(std::memory_order_acquire) + mine < total) {
        if (++spins < 4096) _mm_pause();
        else std::this_thread::yield();
      }
    }
  }

 private:
  // The state word: job id << 40 | chunk count << 20 | next chunk. The count lives in the same word as the
  // claim counter: read from a separate variable, a worker still claiming in the previous job could see the
  // next job's larger count beside the previous job's exhausted counter, claim a chunk that does not exist, run
  // it with the next job's function and count it as done there (the caller then returned before its chunks
  // ended: a crash seen once in a decode loop).
  static constexpr int kChunkBits = 20;
  static constexpr int64_t kMaxChunks = (int64_t{1} << kChunkBits) - 1;
  static constexpr uint64_t kJobMask = (uint64_t{1} << 24) - 1;

  static uint64_t job_of(uint64_t s) { return s >> 40; }

  // the next unclaimed chunk of job `job`, or -1 when none is left (or another job is running)
  int64_t claim(uint64_t job) {
    uint64_t s = state_.load(std::memory_order_acquire);
    while (job_of(s) == job && (s & kMaxChunks) < ((s >> kChunkBits) & kMaxChunks)) {
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return static_cast<int64_t>(s & kMaxChunks);
    }
    return -1;
  }

  void work() {
    uint64_t seen = 0;
    while (true) {
      uint64_t job = job_of(state_.load(std::memory_order_acquire));
      if (job != seen) {
        seen = job;
        for (int64_t c; (c = claim(job)) >= 0;) {
          (*fn_.load(std::memory_order_relaxed))(c);
          done_.fetch_add(1, std::memory_order_acq_rel);
        }
        continue;
      }
      // spin ~100 us for the next job, then sleep until one is posted
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
      bool posted = false;
      for (int i = 0; !posted; ++i) {
        _mm_pause();
        posted = job_of(state_.load(std::memory_order_acquire)) != seen;
        if ((i & 63) == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (posted) continue;
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      cv_.wait(lock, [&] { return stop_ || job_of(state_.load(std::memory_order_acquire)) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      if (stop_) return;
    }
  }

  std::vector<std::thread> workers_;
  // the claim counter and the completion counter on cache lines of their own: every claim and every
  // finished chunk writes one of them, and the caller spins reading the second
  alignas(64) std::atomic<uint64_t> state_{0};  // job id << 40 | chunk count << 20 | next chunk (claim above)
  alignas(64) std::atomic<int64_t> done_{0};    // chunks finished by workers in the current job
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<const std::function<void(int64_t)>*> fn_{nullptr};
  uint64_t job_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// The pool for `threads` threads (rebuilt when the count changes, and in a forked child).
inline Pool& pool(int threads) {
  static std::unique_ptr<Pool> instance;
  static pid_t owner = 0;
  if (!instance || instance->size() != threads || owner != getpid()) {
    if (owner != getpid()) instance.release();  // a forked child: the parent's threads do not exist here
    instance.reset(new Pool(threads));
    owner = getpid();
  }
  return *instance;
}

}  // namespace formers_pool
