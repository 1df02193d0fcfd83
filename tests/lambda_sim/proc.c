/*
 * lambda-sim: the extension processes. Each executable of <layer>/extensions/ is started in parallel in
 * its own process group with a clean environment (aws-spec 1, 5); its stdout and stderr go to a pipe whose
 * lines become `extension` telemetry records; a reaper thread collects exit statuses (the simulator is a
 * child subreaper, so orphaned grandchildren are reaped too); freezing is SIGSTOP of the process group.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim.h"

static pthread_t reaper_thr, output_thr;
static int threads_started;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void env_set(char **env, int *n, const char *k, const char *v)
{
	size_t kl = strlen(k);
	char *s;
	int i;

	if (asprintf(&s, "%s=%s", k, v) < 0)
		return;
	for (i = 0; i < *n; i++)
		if (!strncmp(env[i], k, kl) && env[i][kl] == '=') {
			free(env[i]);
			env[i] = s;
			return;
		}
	if (*n < SIM_MAX_ENV + 31)
		env[(*n)++] = s;
	else
		free(s);
}

/* The environment Lambda gives an extension: reserved variables, then the function's (--env). */
static char **build_env(void)
{
	char **env = calloc(SIM_MAX_ENV + 32, sizeof(char *));
	char buf[PATH_MAX + 64];
	int n = 0, i;

	if (!env)
		return NULL;
	snprintf(buf, sizeof(buf), "127.0.0.1:%d", g.port);
	env_set(env, &n, "AWS_LAMBDA_RUNTIME_API", buf);
	env_set(env, &n, "AWS_REGION", g.o.region);
	env_set(env, &n, "AWS_DEFAULT_REGION", g.o.region);
	if (g.o.snapstart) {
		/* SnapStart: container credentials instead of key variables (aws-spec 5) */
		creds_uri(buf, sizeof(buf));
		env_set(env, &n, "AWS_CONTAINER_CREDENTIALS_FULL_URI", buf);
		env_set(env, &n, "AWS_CONTAINER_AUTHORIZATION_TOKEN", creds_token());
	} else {
		/* fake, well-formed credentials: they only have to sign requests to a local Kinesis */
		env_set(env, &n, "AWS_ACCESS_KEY_ID", "ASIAXSIMULATORKEY000");
		env_set(env, &n, "AWS_SECRET_ACCESS_KEY", "lambdaSimFakeSecretAccessKey0000000000000");
		env_set(env, &n, "AWS_SESSION_TOKEN", "lambda-sim-fake-session-token");
	}
	env_set(env, &n, "AWS_LAMBDA_FUNCTION_NAME", g.o.function_name);
	env_set(env, &n, "AWS_LAMBDA_FUNCTION_VERSION", g.o.function_version);
	snprintf(buf, sizeof(buf), "%d", g.o.memory_mb);
	env_set(env, &n, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", buf);
	env_set(env, &n, "AWS_LAMBDA_INITIALIZATION_TYPE", g.o.snapstart ? "snap-start" : "on-demand");
	if (g.o.log_json)
		env_set(env, &n, "AWS_LAMBDA_LOG_FORMAT", "JSON");
	env_set(env, &n, "TZ", ":UTC");
	env_set(env, &n, "LANG", "en_US.UTF-8");
	env_set(env, &n, "PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin");
	snprintf(buf, sizeof(buf), "%s/lib", g.o.layer);
	env_set(env, &n, "LD_LIBRARY_PATH", buf);
	for (i = 0; i < g.o.nenv; i++) {
		const char *kv = g.o.env[i], *eq = strchr(kv, '=');
		char key[256];
		snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - kv) : (int)strlen(kv), kv);
		/* reserved: a SnapStart function cannot bring key variables back (aws-spec 5) */
		if (g.o.snapstart && (!strcmp(key, "AWS_ACCESS_KEY_ID") || !strcmp(key, "AWS_SECRET_ACCESS_KEY") ||
		                      !strcmp(key, "AWS_SESSION_TOKEN")))
			continue;
		if (eq) {
			env_set(env, &n, key, eq + 1);
		} else if (getenv(kv)) {
			env_set(env, &n, kv, getenv(kv));     /* --env NAME passes the simulator's own value */
		}
	}
	env[n] = NULL;
	return env;
}

static void free_env(char **env)
{
	int i;

	for (i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

int proc_spawn_all(void)
{
	char dir[3840], *names[64];
	int n = 0, i, rc = 0;
	struct dirent *de;
	char **env;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/extensions", g.o.layer);
	d = opendir(dir);
	if (!d) {
		/* a layer without extensions/ is a function without external extensions */
		return errno == ENOENT ? 0 : -errno;
	}
	while ((de = readdir(d)) && n < 64) {
		char p[PATH_MAX + 300];
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (stat(p, &st) || !S_ISREG(st.st_mode))
			continue;
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	if (n > SIM_MAX_EXT) {
		sim_logf("%d extensions in %s: Lambda allows at most %d", n, dir, SIM_MAX_EXT);
		rc = -E2BIG;
		goto out;
	}
	env = build_env();
	if (!env) {
		rc = -ENOMEM;
		goto out;
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	for (i = 0; i < n; i++) {
		struct sim_ext *e = &g.ext[g.next_ext];
		posix_spawn_file_actions_t fa;
		posix_spawnattr_t at;
		sigset_t none, all;
		char *argv[2];
		int pfd[2], r;

		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", names[i]);
		if ((size_t)snprintf(e->path, sizeof(e->path), "%.3800s/%.255s", dir, names[i]) >= sizeof(e->path)) {
			rc = -ENAMETOOLONG;
			break;
		}
		e->out_fd = -1;
		if (pipe2(pfd, O_CLOEXEC)) {
			rc = -errno;
			break;
		}
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
		posix_spawnattr_init(&at);
		sigemptyset(&none);
		sigfillset(&all);
		posix_spawnattr_setpgroup(&at, 0);
		posix_spawnattr_setsigmask(&at, &none);
		posix_spawnattr_setsigdefault(&at, &all);
		posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
		                                  POSIX_SPAWN_SETSIGDEF);
		argv[0] = e->path;
		argv[1] = NULL;
		e->t_exec = now_ms();
		r = posix_spawn(&e->pid, e->path, &fa, &at, argv, env);
		posix_spawn_file_actions_destroy(&fa);
		posix_spawnattr_destroy(&at);
		close(pfd[1]);
		if (r) {
			/* Lambda would report the extension as failed to start: an init failure */
			close(pfd[0]);
			snprintf(g.fail_buf, sizeof(g.fail_buf), "cannot start extension %s: %s", e->name,
			         strerror(r));
			g.fail_reason = g.fail_buf;
			e->exited = 1;
			e->exit_status = 127 << 8;
			g.next_ext++;
			rc = -r;
			break;
		}
		e->out_fd = pfd[0];
		fcntl(e->out_fd, F_SETFL, O_NONBLOCK);
		g.next_ext++;
	}
	g.n_external = g.next_ext;
	free_env(env);
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	return rc;
}

/* ---- reaper ---- */

static void *reaper_main(void *arg)
{
	(void)arg;
	for (;;) {
		int st, i;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			break;          /* ECHILD: nothing left to reap */
		}
		pthread_mutex_lock(&g.mu);
		for (i = 0; i < g.n_external; i++)
			if (g.ext[i].pid == p) {
				g.ext[i].exited = 1;
				g.ext[i].exit_status = st;
				g.ext[i].t_exit = now_ms();
			}
		pthread_cond_broadcast(&g.cv);
		pthread_mutex_unlock(&g.mu);
	}
	return NULL;
}

/* ---- output: one `extension` record per line ---- */

static void out_line(struct sim_ext *e, const char *line, size_t len)
{
	json_object *r;

	if (!g.o.quiet) {
		pthread_mutex_lock(&g.out_mu);
		fprintf(stderr, "[%s] %.*s\n", e->name, (int)len, line);
		pthread_mutex_unlock(&g.out_mu);
	}
	if (g.o.log_json) {
		char tm[40];
		iso_time(tm, sizeof(tm), epoch_ms());
		r = json_object_new_object();
		json_object_object_add(r, "timestamp", json_object_new_string(tm));
		json_object_object_add(r, "level", json_object_new_string("INFO"));
		json_object_object_add(r, "message", json_object_new_string_len(line, (int)len));
	} else {
		r = json_object_new_string_len(line, (int)len);
	}
	pthread_mutex_lock(&g.mu);
	tel_emit("extension", r);
	pthread_mutex_unlock(&g.mu);
}

static void *output_main(void *arg)
{
	struct pollfd pf[SIM_MAX_EXT];
	int idx[SIM_MAX_EXT];

	(void)arg;
	for (;;) {
		int n = 0, i, stop;

		pthread_mutex_lock(&g.mu);
		stop = g.stopping;
		pthread_mutex_unlock(&g.mu);
		for (i = 0; i < g.n_external; i++)
			if (g.ext[i].out_fd >= 0) {
				pf[n].fd = g.ext[i].out_fd;
				pf[n].events = POLLIN;
				idx[n++] = i;
			}
		if (!n || stop)
			break;
		if (poll(pf, (nfds_t)n, 50) <= 0)
			continue;
		for (i = 0; i < n; i++) {
			struct sim_ext *e = &g.ext[idx[i]];
			char buf[16384];
			ssize_t r;
			size_t k;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = read(e->out_fd, buf, sizeof(buf));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				if (e->outlen)
					out_line(e, e->outbuf, e->outlen);
				e->outlen = 0;
				close(e->out_fd);
				pthread_mutex_lock(&g.mu);
				e->out_fd = -1;
				pthread_cond_broadcast(&g.cv);
				pthread_mutex_unlock(&g.mu);
				continue;
			}
			for (k = 0; k < (size_t)r; k++) {
				if (buf[k] == '\n' || e->outlen == sizeof(e->outbuf)) {
					out_line(e, e->outbuf, e->outlen);
					e->outlen = 0;
					if (buf[k] == '\n')
						continue;
				}
				e->outbuf[e->outlen++] = buf[k];
			}
		}
	}
	return NULL;
}

void proc_start_threads(void)
{
	if (pthread_create(&reaper_thr, NULL, reaper_main, NULL) == 0)
		threads_started |= 1;
	if (pthread_create(&output_thr, NULL, output_main, NULL) == 0)
		threads_started |= 2;
}

void proc_join_threads(void)
{
	if (threads_started & 2)
		pthread_join(output_thr, NULL);
	/* the reaper ends by itself at ECHILD; a daemon that left our process groups may keep it waiting */
	if (threads_started & 1)
		pthread_detach(reaper_thr);
	threads_started = 0;
}

/* ---- groups ---- */

int proc_group_alive(pid_t pgid)
{
	return pgid > 0 && kill(-pgid, 0) == 0;
}

void proc_kill_group(struct sim_ext *e, int sig)
{
	if (!e->internal && e->pid > 0)
		kill(-e->pid, sig);
}

void proc_freeze(void)
{
	int i;

	for (i = 0; i < g.n_external; i++)
		proc_kill_group(&g.ext[i], SIGSTOP);
	g.frozen = 1;
	g.freeze_gen++;
}

void proc_thaw(void)
{
	int i;

	for (i = 0; i < g.n_external; i++)
		proc_kill_group(&g.ext[i], SIGCONT);
	g.frozen = 0;
	g.freeze_gen++;
	tel_kick();
}

static long kb_field(const char *path, const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl)) {
			v = strtol(line + kl, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

void proc_mem_sample(struct sim_mem *m)
{
	struct dirent *de;
	DIR *d = opendir("/proc");

	memset(m, 0, sizeof(*m));
	if (!d)
		return;
	while ((de = readdir(d))) {
		char p[300], buf[512], *rp;
		long pgrp = 0;
		int i, ours = 0;
		FILE *f;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(p, sizeof(p), "/proc/%s/stat", de->d_name);
		f = fopen(p, "re");
		if (!f)
			continue;
		if (!fgets(buf, sizeof(buf), f)) {
			fclose(f);
			continue;
		}
		fclose(f);
		rp = strrchr(buf, ')');
		if (!rp || sscanf(rp + 2, "%*c %*d %ld", &pgrp) != 1)
			continue;
		for (i = 0; i < g.n_external; i++)
			if (g.ext[i].pid > 0 && pgrp == g.ext[i].pid)
				ours = 1;
		if (!ours)
			continue;
		m->procs++;
		snprintf(p, sizeof(p), "/proc/%s/smaps_rollup", de->d_name);
		{
			long pss = kb_field(p, "Pss:");
			if (pss > 0)
				m->pss_kb += pss;
		}
		snprintf(p, sizeof(p), "/proc/%s/status", de->d_name);
		{
			long rss = kb_field(p, "VmRSS:"), hwm = kb_field(p, "VmHWM:");
			if (rss > 0)
				m->rss_kb += rss;
			if (hwm > 0)
				m->hwm_kb += hwm;
		}
	}
	closedir(d);
}
