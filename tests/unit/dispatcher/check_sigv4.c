/*
 * SigV4: every header-signing case of the official suite (aws-c-auth's
 * aws-signing-test-suite/v4, kept in tests/data/sigv4-suite with its licence and
 * read at run time from there, relative to the repository root, or from
 * $KTE_SIGV4_SUITE), then the
 * Kinesis headers against golden values from botocore's SigV4Auth, the key cache
 * and credential loading.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>

#include "dispatcher/sigv4.h"

#define SUITE_MAX 128

static char suite_dir[4096];
static char *case_names[SUITE_MAX];
static int n_cases;

/* Reads a whole file into a NUL-terminated heap string; NULL if it cannot. */
static char *
slurp(const char *dir, const char *name, size_t *len)
{
	char path[8192];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf != NULL) {
		buf[n] = '\0';
		if (len != NULL)
			*len = (size_t)n;
	}
	return buf;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Finds the suite and lists the cases that have header-signing results. */
static void
find_suite(void)
{
	const char *env = getenv("KTE_SIGV4_SUITE");
	const char *cands[] = { env, "tests/data/sigv4-suite" };
	struct dirent *de;
	DIR *d = NULL;

	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]) && d == NULL; i++) {
		if (cands[i] == NULL || cands[i][0] == '\0')
			continue;
		if ((d = opendir(cands[i])) != NULL)
			snprintf(suite_dir, sizeof(suite_dir), "%s", cands[i]);
	}
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && n_cases < SUITE_MAX) {
		char path[8192];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s/header-canonical-request.txt", suite_dir, de->d_name);
		if (de->d_name[0] != '.' && stat(path, &st) == 0)
			case_names[n_cases++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(case_names, (size_t)n_cases, sizeof(case_names[0]), name_cmp);
}

START_TEST(test_suite_present)
{
	ck_assert_msg(n_cases >= 30, "SigV4 suite not found or incomplete (%d cases in '%s'): set "
	    "KTE_SIGV4_SUITE or run from the repository root (tests/data/sigv4-suite)", n_cases, suite_dir);
}
END_TEST

struct parsed_request {
	char method[16];
	char *path;
	char *query;
	struct sigv4_header hdr[32];
	char *names[32];
	char *values[32];
	size_t n;
	const char *body;
	size_t body_len;
};

/* Parses request.txt: request line, headers (continuation lines kept with their newline), body. */
static void
parse_request(char *text, size_t len, struct parsed_request *r)
{
	char *line = text, *eol, *sp, *target, *ver, *end = text + len;

	memset(r, 0, sizeof(*r));
	eol = strchr(line, '\n');
	ck_assert_ptr_nonnull(eol);
	*eol = '\0';
	sp = strchr(line, ' ');
	ck_assert_ptr_nonnull(sp);
	ck_assert_uint_lt((size_t)(sp - line), sizeof(r->method));
	memcpy(r->method, line, (size_t)(sp - line));
	target = sp + 1;
	ver = strrchr(target, ' ');
	ck_assert_ptr_nonnull(ver);
	ck_assert_str_eq(ver, " HTTP/1.1");
	*ver = '\0';
	r->path = strdup(target);
	sp = strchr(r->path, '?');
	if (sp != NULL) {
		*sp = '\0';
		r->query = strdup(sp + 1);
	}
	for (line = eol + 1; line < end; line = eol + 1) {
		char *colon;

		eol = strchr(line, '\n');
		if (eol == NULL)
			eol = end;
		*eol = '\0';
		if (line[0] == '\0') {          /* blank line: the body follows */
			r->body = eol + 1 <= end ? eol + 1 : end;
			r->body_len = (size_t)(end - r->body);
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {   /* folded continuation of the previous value */
			char *v;

			ck_assert_uint_gt(r->n, 0);
			ck_assert_int_ge(asprintf(&v, "%s\n%s", r->values[r->n - 1], line), 0);
			free(r->values[r->n - 1]);
			r->values[r->n - 1] = v;
		} else {
			colon = strchr(line, ':');
			ck_assert_ptr_nonnull(colon);
			ck_assert_uint_lt(r->n, 32);
			*colon = '\0';
			r->names[r->n] = strdup(line);
			r->values[r->n] = strdup(colon + 1);
			r->n++;
		}
		if (eol == end)
			break;
	}
	for (size_t i = 0; i < r->n; i++)
		r->hdr[i] = (struct sigv4_header){ r->names[i], r->values[i] };
}

static void
free_request(struct parsed_request *r)
{
	free(r->path);
	free(r->query);
	for (size_t i = 0; i < r->n; i++) {
		free(r->names[i]);
		free(r->values[i]);
	}
}

static const char *
jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static bool
jbool(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static time_t
parse_iso(const char *s)
{
	struct tm tm = { 0 };
	char *e;

	ck_assert_ptr_nonnull(s);
	e = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	ck_assert_msg(e != NULL && *e == '\0', "bad timestamp %s", s);
	return timegm(&tm);
}

/* One suite case: canonical request, string to sign, signature, Authorization. */
START_TEST(test_suite_case)
{
	const char *name;
	char dir[8192], *ctx_text, *req_text, *want_creq, *want_sts, *want_sig, *want_signed, *auth_line;
	struct json_object *ctx, *jc;
	struct sigv4_credentials cred = { 0 };
	struct sigv4_key_cache cache = { 0 };
	struct parsed_request r;
	struct sigv4_request req = { 0 };
	struct sigv4_params p = { 0 };
	struct sigv4_signed s;
	size_t req_len = 0;
	const char *tok;

	if (_i >= n_cases)
		return;                 /* fewer cases than slots: test_suite_present reports it */
	name = case_names[_i];
	snprintf(dir, sizeof(dir), "%s/%s", suite_dir, name);
	ctx_text = slurp(dir, "context.json", NULL);
	req_text = slurp(dir, "request.txt", &req_len);
	want_creq = slurp(dir, "header-canonical-request.txt", NULL);
	want_sts = slurp(dir, "header-string-to-sign.txt", NULL);
	want_sig = slurp(dir, "header-signature.txt", NULL);
	want_signed = slurp(dir, "header-signed-request.txt", NULL);
	ck_assert_msg(ctx_text && req_text && want_creq && want_sts && want_sig && want_signed,
	    "%s: missing file", name);

	ctx = json_tokener_parse(ctx_text);
	ck_assert_ptr_nonnull(ctx);
	ck_assert(json_object_object_get_ex(ctx, "credentials", &jc));
	snprintf(cred.access_key_id, sizeof(cred.access_key_id), "%s", jstr(jc, "access_key_id"));
	snprintf(cred.secret_access_key, sizeof(cred.secret_access_key), "%s", jstr(jc, "secret_access_key"));
	tok = jstr(jc, "token");
	snprintf(cred.session_token, sizeof(cred.session_token), "%s", tok ? tok : "");
	p.region = jstr(ctx, "region");
	p.service = jstr(ctx, "service");
	p.now = parse_iso(jstr(ctx, "timestamp"));
	p.normalize_path = jbool(ctx, "normalize");
	p.sign_body = jbool(ctx, "sign_body");
	p.omit_session_token = jbool(ctx, "omit_session_token");

	parse_request(req_text, req_len, &r);
	req.method = r.method;
	req.path = r.path;
	req.query = r.query;
	req.headers = r.hdr;
	req.n_headers = r.n;
	req.body = r.body;
	req.body_len = r.body_len;

	ck_assert_int_eq(sigv4_sign(&cache, &cred, &req, &p, &s), 0);
	ck_assert_msg(strcmp(s.canonical_request, want_creq) == 0, "%s: canonical request\n--- got\n%s\n--- want\n%s",
	    name, s.canonical_request, want_creq);
	ck_assert_msg(strcmp(s.string_to_sign, want_sts) == 0, "%s: string to sign\n--- got\n%s\n--- want\n%s",
	    name, s.string_to_sign, want_sts);
	ck_assert_msg(strcmp(s.signature, want_sig) == 0, "%s: signature got %s want %s", name, s.signature,
	    want_sig);
	auth_line = strstr(want_signed, "\nAuthorization:");
	ck_assert_ptr_nonnull(auth_line);
	auth_line += strlen("\nAuthorization:");
	*strchrnul(auth_line, '\n') = '\0';
	ck_assert_str_eq(s.authorization, auth_line);
	/* The secret never appears in anything the signer hands out. */
	ck_assert_ptr_null(strstr(s.canonical_request, cred.secret_access_key));
	ck_assert_ptr_null(strstr(s.string_to_sign, cred.secret_access_key));
	ck_assert_ptr_null(strstr(s.authorization, cred.secret_access_key));
	/* A session token is signed exactly when the case says so. */
	ck_assert_int_eq(strstr(s.signed_headers, "x-amz-security-token") != NULL,
	    tok != NULL && !p.omit_session_token);

	sigv4_signed_cleanup(&s);
	ck_assert_ptr_null(s.canonical_request);
	sigv4_key_cache_wipe(&cache);
	sigv4_credentials_wipe(&cred);
	free_request(&r);
	json_object_put(ctx);
	free(ctx_text);
	free(req_text);
	free(want_creq);
	free(want_sts);
	free(want_sig);
	free(want_signed);
}
END_TEST

/*
 * Kinesis golden values: botocore 1.43 SigV4Auth(Credentials(...), "kinesis", region)
 * .add_auth() on POST https://<host>/ with Content-Type application/x-amz-json-1.1 and
 * X-Amz-Target Kinesis_20131202.PutRecords, at 2025-11-28T05:38:13Z (1764308293 s, patched botocore.auth.get_current_datetime).
 */
#define K_AKID "AKIDEXAMPLE"
#define K_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define K_TOKEN "FQoGZXIvYXdzEXAMPLETOKEN//+=="
#define K_TIME ((time_t)1764308293)
#define K_TARGET "Kinesis_20131202.PutRecords"
static const char k_body[] = "{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"k\"}]}";
static const char k_auth_token[] = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251128/us-east-1/kinesis/"
    "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
    "Signature=7b50dd2cb7fc12ae2d4781f3d769ce15e76c2b012c619ea3926b446cc4f37cf9";
static const char k_auth_notoken[] = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251128/eu-west-1/kinesis/"
    "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
    "Signature=86791815d52c5f6830ac4b9382de5949755f3c83685d3f190b2eebe81b689d0b";
static const char k_auth_empty_body[] = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251128/eu-west-1/kinesis/"
    "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
    "Signature=b704dc6bc23362c72c49020429e7a6d106c102e41204c31046435fbe45be9b1f";

static void
k_cred(struct sigv4_credentials *c, const char *token)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->access_key_id, K_AKID);
	strcpy(c->secret_access_key, K_SECRET);
	strcpy(c->session_token, token);
}

START_TEST(test_kinesis_with_token)
{
	struct sigv4_credentials c;
	struct sigv4_kinesis_headers h;

	k_cred(&c, K_TOKEN);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "us-east-1", "kinesis.us-east-1.amazonaws.com",
	    K_TARGET, k_body, strlen(k_body), K_TIME, &h), 0);
	ck_assert_str_eq(h.amz_date, "20251128T053813Z");
	ck_assert_str_eq(h.authorization, k_auth_token);
	ck_assert_ptr_null(strstr(h.authorization, K_SECRET));
}
END_TEST

START_TEST(test_kinesis_without_token)
{
	struct sigv4_credentials c;
	struct sigv4_kinesis_headers h;

	k_cred(&c, "");                 /* "" = no token: x-amz-security-token not signed */
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME, &h), 0);
	ck_assert_str_eq(h.authorization, k_auth_notoken);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, NULL, 0,
	    K_TIME, &h), 0);
	ck_assert_str_eq(h.authorization, k_auth_empty_body);
}
END_TEST

START_TEST(test_kinesis_body_changes_signature)
{
	struct sigv4_credentials c;
	struct sigv4_kinesis_headers h;
	char body[sizeof(k_body)];

	k_cred(&c, "");
	memcpy(body, k_body, sizeof(body));
	body[10] ^= 1;
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, body,
	    strlen(body), K_TIME, &h), 0);
	ck_assert_str_ne(h.authorization, k_auth_notoken);
	/* Same everything but one second later: new date header, new signature. */
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME + 1, &h), 0);
	ck_assert_str_eq(h.amz_date, "20251128T053814Z");
	ck_assert_str_ne(h.authorization, k_auth_notoken);
}
END_TEST

START_TEST(test_kinesis_bad_args)
{
	struct sigv4_credentials c;
	struct sigv4_kinesis_headers h;

	k_cred(&c, "");
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "", K_TARGET, "", 0, K_TIME, &h), -EINVAL);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "", "h", K_TARGET, "", 0, K_TIME, &h), -EINVAL);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "h", NULL, "", 0, K_TIME, &h), -EINVAL);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "h", K_TARGET, NULL, 5, K_TIME, &h), -EINVAL);
	c.secret_access_key[0] = '\0';
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "h", K_TARGET, "", 0, K_TIME, &h), -EINVAL);
	k_cred(&c, "");
	c.access_key_id[0] = '\0';
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "h", K_TARGET, "", 0, K_TIME, &h), -EINVAL);
	/* Long but valid values sign; a region so long that Authorization cannot fit does not. */
	char region[500], target[600];

	k_cred(&c, "");
	memset(c.access_key_id, 'A', sizeof(c.access_key_id) - 1);
	memset(region, 'r', sizeof(region) - 1);
	region[sizeof(region) - 1] = '\0';
	memset(target, 't', sizeof(target) - 1);
	target[sizeof(target) - 1] = '\0';
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, region + 440, "h", target, "", 0, K_TIME, &h), 0);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, region, "h", target, "", 0, K_TIME, &h), -ENAMETOOLONG);
	c.access_key_id[sizeof(c.access_key_id) - 1] = 'A';     /* not NUL-terminated */
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "r", "h", target, "", 0, K_TIME, &h), -EINVAL);
}
END_TEST

/* The cache gives the same signatures as a fresh derivation, and derives only when it must. */
START_TEST(test_key_cache)
{
	struct sigv4_credentials c;
	struct sigv4_key_cache k = { 0 };
	struct sigv4_kinesis_headers h, fresh;
	const time_t day = 86400;

	k_cred(&c, K_TOKEN);
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "us-east-1", "kinesis.us-east-1.amazonaws.com", K_TARGET,
	    k_body, strlen(k_body), K_TIME, &h), 0);
	ck_assert_str_eq(h.authorization, k_auth_token);
	ck_assert_uint_eq(k.derivations, 1);
	/* Same day, later: reused; the signature is still right. */
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "us-east-1", "kinesis.us-east-1.amazonaws.com", K_TARGET,
	    k_body, strlen(k_body), K_TIME, &h), 0);
	ck_assert_str_eq(h.authorization, k_auth_token);
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "us-east-1", "kinesis.us-east-1.amazonaws.com", K_TARGET,
	    k_body, strlen(k_body), K_TIME + 3600, &h), 0);
	ck_assert_uint_eq(k.derivations, 1);

	/* Next day: re-derived, and equal to what an uncached signer says. */
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "us-east-1", "kinesis.us-east-1.amazonaws.com", K_TARGET,
	    k_body, strlen(k_body), K_TIME + day, &h), 0);
	ck_assert_uint_eq(k.derivations, 2);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "us-east-1", "kinesis.us-east-1.amazonaws.com", K_TARGET,
	    k_body, strlen(k_body), K_TIME + day, &fresh), 0);
	ck_assert_str_eq(h.authorization, fresh.authorization);
	ck_assert_ptr_nonnull(strstr(h.authorization, "/20251129/us-east-1/"));

	/* Another region: re-derived (and the old key is not used for it). */
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME, &h), 0);
	ck_assert_uint_eq(k.derivations, 3);
	k_cred(&c, "");
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME, &h), 0);
	ck_assert_str_eq(h.authorization, k_auth_notoken);
	ck_assert_uint_eq(k.derivations, 3);         /* a token change alone keeps the key */

	/* Rotated credentials (new key id and secret): re-derived, signature follows the new secret. */
	strcpy(c.access_key_id, "AKIDROTATED");
	strcpy(c.secret_access_key, "anotherSecretKeyEXAMPLE");
	ck_assert_int_eq(sigv4_sign_kinesis(&k, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME, &h), 0);
	ck_assert_uint_eq(k.derivations, 4);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME, &fresh), 0);
	ck_assert_str_eq(h.authorization, fresh.authorization);
	ck_assert_ptr_nonnull(strstr(h.authorization, "Credential=AKIDROTATED/"));

	sigv4_key_cache_wipe(&k);
	ck_assert(!k.valid);
	for (size_t i = 0; i < sizeof(k.key); i++)
		ck_assert_uint_eq(k.key[i], 0);
}
END_TEST

/* The generic signer agrees with the Kinesis one when given the same headers. */
START_TEST(test_generic_matches_kinesis)
{
	struct sigv4_credentials c;
	struct sigv4_header hs[] = {
		{ "X-Amz-Target", K_TARGET },
		{ "Host", "kinesis.us-east-1.amazonaws.com" },
		{ "Content-Type", "application/x-amz-json-1.1" },
	};
	struct sigv4_request r = { .method = "POST", .path = "/", .headers = hs, .n_headers = 3,
	    .body = k_body, .body_len = strlen(k_body) };
	struct sigv4_params p = { .region = "us-east-1", .service = "kinesis", .now = K_TIME,
	    .normalize_path = true };
	struct sigv4_signed s;

	k_cred(&c, K_TOKEN);
	ck_assert_int_eq(sigv4_sign(NULL, &c, &r, &p, &s), 0);
	ck_assert_str_eq(s.authorization, k_auth_token);
	ck_assert_str_eq(s.signed_headers, "content-type;host;x-amz-date;x-amz-security-token;x-amz-target");
	ck_assert_ptr_nonnull(strstr(s.canonical_request, "\nx-amz-security-token:" K_TOKEN "\n"));
	sigv4_signed_cleanup(&s);
	sigv4_signed_cleanup(&s);       /* idempotent */
}
END_TEST

START_TEST(test_credentials_load)
{
	struct sigv4_credentials c;
	char big[5000];

	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	ck_assert_int_eq(sigv4_credentials_load(&c), -ENOENT);
	setenv("AWS_ACCESS_KEY_ID", K_AKID, 1);
	ck_assert_int_eq(sigv4_credentials_load(&c), -ENOENT);
	setenv("AWS_SECRET_ACCESS_KEY", "", 1);
	ck_assert_int_eq(sigv4_credentials_load(&c), -ENOENT);
	ck_assert_str_eq(c.access_key_id, "");  /* wiped on failure */
	setenv("AWS_SECRET_ACCESS_KEY", K_SECRET, 1);
	ck_assert_int_eq(sigv4_credentials_load(&c), 0);
	ck_assert_str_eq(c.access_key_id, K_AKID);
	ck_assert_str_eq(c.secret_access_key, K_SECRET);
	ck_assert_str_eq(c.session_token, "");
	setenv("AWS_SESSION_TOKEN", "", 1);     /* empty token = unset */
	ck_assert_int_eq(sigv4_credentials_load(&c), 0);
	ck_assert_str_eq(c.session_token, "");
	setenv("AWS_SESSION_TOKEN", K_TOKEN, 1);
	ck_assert_int_eq(sigv4_credentials_load(&c), 0);
	ck_assert_str_eq(c.session_token, K_TOKEN);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	setenv("AWS_SESSION_TOKEN", big, 1);
	ck_assert_int_eq(sigv4_credentials_load(&c), -ENAMETOOLONG);
	ck_assert_str_eq(c.secret_access_key, "");
	sigv4_credentials_wipe(&c);
	for (size_t i = 0; i < sizeof(c); i++)
		ck_assert_uint_eq(((unsigned char *)&c)[i], 0);
}
END_TEST

/* Loaded credentials with an empty token sign exactly like no token at all. */
START_TEST(test_empty_token_env_is_unset)
{
	struct sigv4_credentials c;
	struct sigv4_kinesis_headers h;

	setenv("AWS_ACCESS_KEY_ID", K_AKID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", K_SECRET, 1);
	setenv("AWS_SESSION_TOKEN", "", 1);
	ck_assert_int_eq(sigv4_credentials_load(&c), 0);
	ck_assert_int_eq(sigv4_sign_kinesis(NULL, &c, "eu-west-1", "127.0.0.1:4568", K_TARGET, k_body,
	    strlen(k_body), K_TIME, &h), 0);
	ck_assert_str_eq(h.authorization, k_auth_notoken);
	sigv4_credentials_wipe(&c);
}
END_TEST

START_TEST(test_amz_date)
{
	char d[17];

	ck_assert_int_eq(sigv4_amz_date(0, d), 0);
	ck_assert_str_eq(d, "19700101T000000Z");
	ck_assert_int_eq(sigv4_amz_date(1440938160, d), 0);
	ck_assert_str_eq(d, "20150830T123600Z");
	ck_assert_int_eq(sigv4_amz_date((time_t)1 << 50, d), -EINVAL);
}
END_TEST

/* Generic signer: query decoding/encoding and path normalisation beyond the suite. */
START_TEST(test_canonical_edges)
{
	struct sigv4_credentials c;
	struct sigv4_header hs[] = { { "Host", "h" }, { "X-Multi", "  a \t b  " } };
	struct sigv4_request r = { .method = "GET", .headers = hs, .n_headers = 2 };
	struct sigv4_params p = { .region = "r", .service = "s", .now = K_TIME, .normalize_path = true };
	struct sigv4_signed s;

	k_cred(&c, "");
	r.path = "/a/b/../c/./d/..";
	r.query = "b=2&a=%7e&a=1&c&d=x+y%2";
	ck_assert_int_eq(sigv4_sign(NULL, &c, &r, &p, &s), 0);
	ck_assert_ptr_nonnull(strstr(s.canonical_request, "GET\n/a/c/\na=1&a=~&b=2&c=&d=x%2By%252\nhost:h\n"
	    "x-amz-date:20251128T053813Z\nx-multi:a b\n\nhost;x-amz-date;x-multi\n"));
	sigv4_signed_cleanup(&s);
	r.path = "";
	r.query = "&&";
	ck_assert_int_eq(sigv4_sign(NULL, &c, &r, &p, &s), 0);
	ck_assert_ptr_nonnull(strstr(s.canonical_request, "GET\n/\n\nhost:h\n"));
	sigv4_signed_cleanup(&s);
	hs[0].name = "";
	ck_assert_int_eq(sigv4_sign(NULL, &c, &r, &p, &s), -EINVAL);
	ck_assert_ptr_null(s.canonical_request);
	hs[0].name = "Host";
	p.region = "a/b";
	ck_assert_int_eq(sigv4_sign(NULL, &c, &r, &p, &s), -EINVAL);
}
END_TEST

static Suite *
sigv4_suite(void)
{
	Suite *s = suite_create("sigv4");
	TCase *tc;

	tc = tcase_create("official-suite");
	tcase_add_test(tc, test_suite_present);
	tcase_add_loop_test(tc, test_suite_case, 0, n_cases > 0 ? n_cases : 1);
	suite_add_tcase(s, tc);

	tc = tcase_create("kinesis");
	tcase_add_test(tc, test_kinesis_with_token);
	tcase_add_test(tc, test_kinesis_without_token);
	tcase_add_test(tc, test_kinesis_body_changes_signature);
	tcase_add_test(tc, test_kinesis_bad_args);
	tcase_add_test(tc, test_key_cache);
	tcase_add_test(tc, test_generic_matches_kinesis);
	suite_add_tcase(s, tc);

	tc = tcase_create("credentials");
	tcase_add_test(tc, test_credentials_load);
	tcase_add_test(tc, test_empty_token_env_is_unset);
	suite_add_tcase(s, tc);

	tc = tcase_create("canonical");
	tcase_add_test(tc, test_amz_date);
	tcase_add_test(tc, test_canonical_edges);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	find_suite();
	sr = srunner_create(sigv4_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	for (int i = 0; i < n_cases; i++)
		free(case_names[i]);
	return failed == 0 ? 0 : 1;
}
