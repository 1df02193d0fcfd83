/*
 * libFuzzer target for the listener's body handling: intake_batch (split, validate,
 * filter, write to a real ring) on arbitrary bytes. Checks the invariants too:
 * a 200 leaves exactly res.written records, each the exact bytes of a piece of the
 * input; anything else leaves the ring untouched (never a partial batch).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control.h"
#include "listener/intake.h"
#include "log.h"
#include "ring.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ring ring;
static struct control *ctl;
static struct control_fds fds;
static struct intake in;
static struct intake_scratch scratch;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct kte_config cfg;

	(void)argc;
	(void)argv;
	log_init("fuzz", LOG_LEVEL_ERROR);
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_record_bytes = 4096;            /* small, so oversized events occur */
	cfg.min_log_level = 2;
	strcpy(cfg.drop_types, "platform.start,platform.init*");
	if (ring_create(&ring, 1u << 20) != 0 || (ctl = control_new(&fds)) == NULL)
		abort();
	if (intake_init(&in, &cfg, &ring, ctl, fds.to_controller, 1) != 0)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct intake_result res;
	struct ring_record rec;
	size_t n = 0;
	int st = intake_batch(&in, &scratch, data, size, &res);

	if (st != 200 && st != 400 && st != 503)
		abort();
	while (ring_peek(&ring, &rec) == 0) {
		if (st != 200 || rec.len == 0 || rec.len > in.max_event ||
		    memmem(data, size, rec.data, rec.len) == NULL)
			abort();
		n++;
		if (ring_release(&ring, rec.next) != 0)
			abort();
	}
	if (st == 200 && n != res.written)
		abort();
	if (st == 400 && res.why == NULL)
		abort();
	return 0;
}
