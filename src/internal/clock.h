/* clock.h — the two clocks cairn reads: wall time for event timestamps and
 * the monotonic clock for timeouts, throttles and latency. */
#ifndef CAIRN_INTERNAL_CLOCK_H
#define CAIRN_INTERNAL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t cairn__wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint64_t cairn__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A CPU hint for short spin loops: lets the sibling hyperthread run and
 * saves power; never used for unbounded waits. */
static inline void cairn__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

#endif
