/*
 * Starts an extension inside a root, as cheaply as possible: bench_cold_start.sh puts a copy of this
 * static program at <sim layer>/extensions/NAME, where the Lambda simulator starts it; it enters the root
 * named in <sim layer>/root (one line) and execs /opt/extensions/NAME there, keeping the environment.
 * A /bin/sh script calling chroot(8) would do the same at the cost of two dynamic executables, whose
 * start-up time (milliseconds on a loaded machine) would add noise to both sides of the comparison.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	char self[PATH_MAX], conf[PATH_MAX + 16], root[PATH_MAX], prog[PATH_MAX], *name;
	ssize_t n;
	FILE *f;

	(void)argc;
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		goto fail;
	self[n] = '\0';
	name = basename(argv[0]);
	snprintf(prog, sizeof(prog), "/opt/extensions/%s", name);
	snprintf(conf, sizeof(conf), "%s/../root", dirname(self));
	if ((f = fopen(conf, "r")) == NULL || fgets(root, sizeof(root), f) == NULL)
		goto fail;
	fclose(f);
	root[strcspn(root, "\n")] = '\0';
	if (chroot(root) != 0 || chdir("/") != 0)
		goto fail;
	argv[0] = prog;
	execv(prog, argv);
fail:
	fprintf(stderr, "chroot_launcher: %s: %s\n", argv[0], strerror(errno));
	return 127;
}
