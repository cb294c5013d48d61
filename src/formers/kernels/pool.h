// A thread pool that degrades gracefully on a shared CPU.
//
// OpenMP regions (at::parallel_for) split work statically and end in a barrier: when another process
// holds a core, each region waits for the descheduled thread's whole share, once per matrix product, and a
// 2-core machine with one busy neighbour decodes 5-10x slower than with one thread. Here the work is a
// list of small units that threads claim one at a time (Parts below); the caller claims units too and afterwards
// waits only for units another thread has already started. A worker that is not running simply claims nothing,
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

// Units [0, total) cut into one contiguous part per thread. A thread takes its own part's units front to back
// (for products: one sequential stream of weights, which the prefetchers follow), then takes units from the back
// of the other parts, so a thread that is not running holds at most the unit it started. Threads that took units
// one at a time from one shared counter read interleaved rows (16-row claims of a Q4_0 weight: a 1.6x slower
// decode step), and claims of 256 KiB or more, which avoided that, left the products of 2-4 claims unbalanced: a
// SmolLM-135M bfloat16 decode is 5-8% faster split this way, Q4_0 8%, float32 3%. Each part's word,
// on a cache line of its own: job id << 40 | back << 20 | front, so a thread still in an earlier job claims nothing.
class Parts {
 public:
  static constexpr int kBits = 20;
  static constexpr int64_t kMaxUnits = (int64_t{1} << kBits) - 1;

  explicit Parts(int n) : n_(n), words_(new Word[n]) {}
  int size() const { return n_; }

  void reset(uint64_t job, int64_t total) {
    for (int i = 0; i < n_; ++i) {
      const uint64_t front = static_cast<uint64_t>(total * i / n_), back = static_cast<uint64_t>(total * (i + 1) / n_);
      words_[i].v.store(job << 40 | back << kBits | front, std::memory_order_release);
    }
  }

  // the next unit of job `job` for thread `self`, or -1 when none is left (or another job is running)
  int64_t next(uint64_t job, int self) {
    for (int i = 0; i < n_; ++i) {
      const int part = (self + i) % n_;
      std::atomic<uint64_t>& w = words_[part].v;
      uint64_t s = w.load(std::memory_order_acquire);
      while (s >> 40 == job && (s & kMaxUnits) < ((s >> kBits) & kMaxUnits)) {
        const bool own = i == 0;  // own part from the front, the others from the back
        const uint64_t taken = own ? s + 1 : s - (uint64_t{1} << kBits);
        if (w.compare_exchange_weak(s, taken, std::memory_order_acq_rel))
          return own ? static_cast<int64_t>(s & kMaxUnits) : static_cast<int64_t>(((s >> kBits) & kMaxUnits) - 1);
      }
    }
    return -1;
  }

 private:
  struct alignas(64) Word {
    std::atomic<uint64_t> v{0};
  };
  int n_;
  std::unique_ptr<Word[]> words_;
};

class Pool {
 public:
  explicit Pool(int threads) : parts_(threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
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

  // fn(unit) for unit in [0, total), spread over the caller and the workers (Parts); returns when all are done
  void run(int64_t total, const std::function<void(int64_t)>& fn) {
    if (total <= 0) return;
    if (total > Parts::kMaxUnits) {  // more than a part's word counts: on this thread alone
      for (int64_t c = 0; c < total; ++c) fn(c);
      return;
    }
    fn_.store(&fn, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t job = ++job_ & kJobMask;
    parts_.reset(job, total);
    job_posted_.store(job, std::memory_order_release);
    if (sleepers_.load(std::memory_order_acquire) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      cv_.notify_all();
    }
    int64_t mine = 0;
    for (int64_t c; (c = parts_.next(job, 0)) >= 0; ++mine) fn(c);
    if (mine < total) {  // wait for units other threads started
      int spins = 0;
      while (done_.load(std::memory_order_acquire) + mine < total) {
        if (++spins < 4096) _mm_pause();
        else std::this_thread::yield();
      }
    }
  }

 private:
  static constexpr uint64_t kJobMask = (uint64_t{1} << 24) - 1;

  void work(int self) {
    uint64_t seen = 0;
    while (true) {
      const uint64_t job = job_posted_.load(std::memory_order_acquire);
      if (job != seen) {
        seen = job;
        for (int64_t c; (c = parts_.next(job, self)) >= 0;) {
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
        posted = job_posted_.load(std::memory_order_acquire) != seen;
        if ((i & 63) == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (posted) continue;
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      cv_.wait(lock, [&] { return stop_ || job_posted_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      if (stop_) return;
    }
  }

  std::vector<std::thread> workers_;
  Parts parts_;
  // the posted job and the completion counter on cache lines of their own: the caller spins reading the second
  alignas(64) std::atomic<uint64_t> job_posted_{0};
  alignas(64) std::atomic<int64_t> done_{0};  // units finished by workers in the current job
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
