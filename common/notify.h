/*
 * eventfd wake-ups between processes: EFD_CLOEXEC | EFD_NONBLOCK, writes of 1,
 * EINTR retried, EAGAIN ignored. Safe from any thread and any process holding the fd.
 */
#ifndef KTE_NOTIFY_H
#define KTE_NOTIFY_H

#include <stdint.h>

/* Returns a new eventfd, or -errno. */
int notify_new(void) __attribute__((warn_unused_result));
/* Adds 1 to the counter (wakes a poller). Never blocks. */
void notify_signal(int fd);
/* Reads and clears the counter; returns what it held (0 if nothing). Never blocks. */
uint64_t notify_drain(int fd);
/*
 * Waits until fd is readable or timeout_ms passes (-1 = forever), then drains it.
 * Returns 1 if signalled, 0 on timeout, -errno on error (EINTR returns -EINTR so
 * callers can look at their signal flags).
 */
int notify_wait(int fd, int timeout_ms);

/* Milliseconds: CLOCK_MONOTONIC for intervals, CLOCK_REALTIME for Lambda's deadlineMs. */
uint64_t now_mono_ms(void);
uint64_t now_mono_us(void);
uint64_t now_epoch_ms(void);

#endif
