// Boost.Asio compiled once (BOOST_ASIO_SEPARATE_COMPILATION), not in every file that
// uses it: compile time matters on two cores (DESIGN "Conventions").
//
// One change to how it allocates: the reactor's per-descriptor records (one per
// socket; Asio keeps them in a pool that never shrinks) come from their own
// slab pages instead of malloc. Allocated among the coroutine frames of a burst of
// connections, they would pin every page of that memory after the burst ends; kept
// apart, the freed frames can be given back to the system (docs/benchmarks.md).
#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/asio/detail/object_pool.hpp>
#include <sys/mman.h>

#include <cstddef>
#include <mutex>
#include <new>

namespace {

class DescriptorSlab {
 public:
  static constexpr std::size_t kPage = 64 * 1024;
  void* allocate(std::size_t size) {
    std::lock_guard lock(mutex_);
    if (free_ != nullptr) {
      Slot* s = free_;
      free_ = s->next;
      return s;
    }
    const std::size_t slot = (size + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) * alignof(std::max_align_t);
    if (next_ == nullptr || next_ + slot > end_) {
      void* page = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (page == MAP_FAILED) throw std::bad_alloc();
      next_ = static_cast<char*>(page);
      end_ = next_ + kPage;
    }
    void* out = next_;
    next_ += slot;
    return out;
  }
  void deallocate(void* p) {
    std::lock_guard lock(mutex_);
    auto* s = static_cast<Slot*>(p);
    s->next = free_;
    free_ = s;
  }

 private:
  struct Slot {
    Slot* next;
  };
  std::mutex mutex_;
  Slot* free_ = nullptr;
  char* next_ = nullptr;
  char* end_ = nullptr;
};

DescriptorSlab& slab() {
  static DescriptorSlab s;  // never destroyed before the io_contexts that use it
  return s;
}

}  // namespace

namespace boost::asio::detail {

using meshd_descriptor_state = epoll_reactor::descriptor_state;

template <>
meshd_descriptor_state* object_pool_access::create<meshd_descriptor_state, bool>(bool locking) {
  void* p = slab().allocate(sizeof(meshd_descriptor_state));
  return new (p) meshd_descriptor_state(locking);
}

template <>
void object_pool_access::destroy<meshd_descriptor_state>(meshd_descriptor_state* o) {
  o->~meshd_descriptor_state();
  slab().deallocate(o);
}

}  // namespace boost::asio::detail

#include <boost/asio/impl/src.hpp>
