#include "control.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "notify.h"

struct control *
control_new(struct control_fds *fds)
{
	struct control *c;
	int saved;

	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->magic = CONTROL_MAGIC;
	c->version = CONTROL_VERSION;
	c->size = sizeof(*c);
	atomic_store(&c->kinesis_healthy, 1);
	fds->to_dispatcher = notify_new();
	fds->to_controller = notify_new();
	if (fds->to_dispatcher < 0 || fds->to_controller < 0) {
		saved = fds->to_dispatcher < 0 ? -fds->to_dispatcher : -fds->to_controller;
		control_free(c, fds);
		errno = saved;
		return NULL;
	}
	return c;
}

int
control_check(const struct control *c)
{
	if (c == NULL || c->magic != CONTROL_MAGIC || c->version != CONTROL_VERSION || c->size != sizeof(*c))
		return -EPROTO;
	return 0;
}

void
control_free(struct control *c, struct control_fds *fds)
{
	if (fds != NULL) {
		if (fds->to_dispatcher >= 0)
			close(fds->to_dispatcher);
		if (fds->to_controller >= 0)
			close(fds->to_controller);
		fds->to_dispatcher = fds->to_controller = -1;
	}
	if (c != NULL)
		munmap(c, sizeof(*c));
}
