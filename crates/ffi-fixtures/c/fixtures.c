/* C functions for the foreign-call tests and benchmarks of pagurus. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The cheapest call there is. */
int64_t pf_add(int64_t a, int64_t b) { return a + b; }

/* One 64 KiB frame entered without stack probes: the first store lands at the lowest address
 * of the frame, 64 KiB below the caller's stack pointer. Returns the sum of seed + i over the
 * 8192 words, which proves every word was written and read back. */
int64_t pf_unprobed_64k(int64_t seed) {
    volatile int64_t buf[8192];
    for (int i = 0; i < 8192; i++) buf[i] = seed + i;
    int64_t sum = 0;
    for (int i = 0; i < 8192; i++) sum += buf[i];
    return sum;
}

/* Uses about `bytes` of stack in frames of a little over 1 KiB (each small enough to need no
 * probe). Returns seed + 2 * (bytes / 1024). */
int64_t pf_use_stack(size_t bytes, int64_t seed) {
    if (bytes < 1024) return seed;
    volatile char frame[1000];
    frame[0] = (char)seed;
    frame[999] = 1;
    return pf_use_stack(bytes - 1024, seed + 1) + frame[999] + (frame[0] - (char)seed);
}

/* Calls back into the caller: cb(x) + 1. */
int64_t pf_callback(int64_t (*cb)(int64_t), int64_t x) { return cb(x) + 1; }

/* Blocks (sleeping 1 ms at a time) until *flag is non-zero or timeout_ms pass; returns whether
 * the flag was seen. */
int pf_wait_flag(volatile int *flag, int timeout_ms) {
    struct timespec ms = {0, 1000000};
    for (int waited = 0; waited < timeout_ms; waited++) {
        if (*flag) return 1;
        nanosleep(&ms, NULL);
    }
    return *flag != 0;
}

/* Fails the way C library functions do: sets errno to `err` and returns -1. */
int pf_fail_with_errno(int err) {
    errno = err;
    return -1;
}

/* One 14 MiB frame entered without stack probes: larger than a system stack (8 MiB) and its
 * guard (4 MiB) together, so its first store lands below the guard. Returns seed + 1. */
int64_t pf_unprobed_14m(int64_t seed) {
    volatile char buf[14 << 20];
    buf[0] = (char)seed;
    buf[sizeof buf - 1] = 1;
    return seed + buf[sizeof buf - 1] + (buf[0] - (char)seed);
}
