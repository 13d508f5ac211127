//! Allocator tuning for large I/O buffers.
//!
//! READ and WRITE move up to 8 MiB per request. With glibc's defaults such
//! buffers are mapped fresh from the kernel and unmapped again on every
//! request, and each page faults on first touch; keeping them in the heap
//! lets the next request reuse memory that is already mapped.

/// Call once at startup, before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc malloc's parameters; it is called
    // once, before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        // Large buffers are allocated on one thread (the connection's, or
        // a blocking pool thread for READ) and freed on another; with one
        // arena per thread each keeps its own free 8 MiB blocks. Two
        // arenas bound that, and large allocations are too few to contend.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
