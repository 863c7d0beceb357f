//! Allocator settings for programs that run the model.

/// Keeps freed memory in the process instead of handing it back to the kernel.
///
/// A training or inference step allocates and frees many tensors of several MB to several
/// hundred MB. glibc maps each of them with `mmap` and unmaps it when freed, so every step
/// page-faults and zeroes its whole working set again: a fifth of a ViT-B/16 training step on
/// the CPU. With `mmap` and trimming off, freed blocks are reused; the peak memory stays the
/// same, and the memory is returned when the process ends.
///
/// Call it first thing in `main`, before any thread starts (the `transreid` binary does). A
/// no-op outside Linux with glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
