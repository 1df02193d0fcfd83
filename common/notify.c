#include "notify.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int
notify_new(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	return fd < 0 ? -errno : fd;
}

void
notify_signal(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	/* EAGAIN means the counter is saturated: the reader is already due to wake. */
}

uint64_t
notify_drain(int fd)
{
	uint64_t v = 0;

	while (read(fd, &v, sizeof(v)) < 0) {
		if (errno != EINTR)
			return 0;
	}
	return v;
}

int
notify_wait(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, timeout_ms);

	if (n < 0)
		return -errno;
	if (n == 0)
		return 0;
	notify_drain(fd);
	return 1;
}

static uint64_t
clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t
now_mono_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000ull;
}

uint64_t
now_mono_us(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000ull;
}

uint64_t
now_epoch_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000ull;
}
